#!/usr/bin/env python
"""Build the docs site into `_docs/` without Quarto (what `make docs` runs when `quarto` is not on PATH).

Each notebook under `nbs/` (recursive; names starting with `_` or `.` skipped) becomes one page, named as
nbdev names it (`00_core.ipynb` -> `core.html`). Notebooks go through nbdev's own docs processors
(`nbdev.processors.FilterDefaults`: frontmatter from the H1 and `> summary`, `show_doc` for exported
symbols, `#| hide` / `#| export` removal, doc links), then through nbconvert's HTML exporter (lab template).
Saved outputs are kept as they are; nbdev only executes imports, exported cells and `show_doc` cells.
MathJax 3, require.js and the jupyter-widgets HTML manager are served from `_docs/_static/`, copied from
npm packages cached in `.cache/npm` (fetched once with `npm pack`), so a page makes no outside request.

    python tools/build_docs.py [--nbs nbs] [--out _docs] [--cache .cache/npm]
"""
from __future__ import annotations
import argparse, atexit, contextlib, html, os, re, shutil, subprocess, sys, tarfile, tempfile, time, warnings
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
# pinned npm packages (name in the cache -> npm spec); html-manager's dist/embed-amd.js bundles its dependencies
NPM = {
    'mathjax':      'mathjax@3.2.2',
    'html-manager': '@jupyter-widgets/html-manager@1.0.15',
    'requirejs':    'requirejs@2.3.8',
}
IMG_EXTS = {'.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp', '.pdf'}

class BuildError(Exception): "A problem the person running the build can fix, told in one sentence."

# ---------------------------------------------------------------- npm assets
def fetch_npm(cache:Path) -> dict:
    "Unpack the pinned npm packages into `cache` (once, with `npm pack`) and return their package folders."
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, spec in NPM.items():
        dest = cache/name
        stamp = dest/'.spec'
        if not (stamp.exists() and stamp.read_text() == spec):
            if not shutil.which('npm'):
                raise BuildError(f"npm is needed once to fetch {spec} into {cache}: install Node.js/npm "
                                 "(apt-get install -y npm) or copy a filled .cache/npm here.")
            with tempfile.TemporaryDirectory() as td:
                r = subprocess.run(['npm', 'pack', spec, '--silent', '--pack-destination', td],
                                   capture_output=True, text=True)
                tgz = list(Path(td).glob('*.tgz'))
                if r.returncode or not tgz:
                    raise BuildError(f"`npm pack {spec}` failed ({r.stderr.strip()[-300:]}): check that npm "
                                     "reaches its registry, or copy a filled .cache/npm here.")
                shutil.rmtree(dest, ignore_errors=True)
                with tarfile.open(tgz[0]) as t:
                    try: t.extractall(td, filter='data')
                    except TypeError: t.extractall(td)   # Pythons without extraction filters
                shutil.move(str(Path(td)/'package'), dest)
            stamp.write_text(spec)
        out[name] = dest
    return out

def _link_or_copy(src, dst):
    try: os.link(src, dst)
    except OSError: shutil.copy2(src, dst)

def vendor(pkgs:dict, static:Path):
    "Copy the files the pages load from the npm packages into `static` (hard links where possible)."
    static.mkdir(parents=True, exist_ok=True)
    mj = static/'mathjax'
    shutil.rmtree(mj, ignore_errors=True)
    # MathJax's combined component loads its fonts (and on demand extensions) relative to itself
    shutil.copytree(pkgs['mathjax']/'es5', mj, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns('sre', 'mml-*', '*svg*', 'node-main.js'))
    hm = static/'html-manager'
    shutil.rmtree(hm, ignore_errors=True); hm.mkdir()
    for f in (pkgs['html-manager']/'dist').iterdir():
        if f.name == 'embed-amd.js' or f.suffix in ('.woff', '.woff2', '.ttf', '.svg', '.eot'):
            _link_or_copy(f, hm/f.name)
    shutil.copy2(pkgs['requirejs']/'require.js', static/'require.js')
    (static/'site.css').write_text(SITE_CSS)

# ---------------------------------------------------------------- notebooks
def find_notebooks(nbs:Path) -> list[Path]:
    "Notebooks under `nbs`, as nbdev finds them: index first, then top-level by name, then each subfolder."
    skip = re.compile(r'^[_.]')
    found = []
    for dp, dns, fns in os.walk(nbs):
        dns[:] = sorted(d for d in dns if not skip.match(d))
        found += [Path(dp)/f for f in fns if f.endswith('.ipynb') and not skip.match(f)]
    def key(p):
        rel = p.relative_to(nbs)
        return (len(rel.parts) > 1, rel.parts[:-1], rel.stem != 'index', rel.name)
    return sorted(found, key=key)

def page_of(rel:Path) -> Path:
    "The page an nbs-relative notebook path becomes (nbdev's rule: numeric prefix dropped)."
    from nbdev.config import nbpath2html
    return nbpath2html(rel)

_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')

def split_directives(src:str):
    "Leading `#|` directive lines of a code cell as a dict, and the source without them."
    lines, d = src.splitlines(), {}
    i = 0
    while i < len(lines):
        m = _re_dir.match(lines[i])
        if m: d[m.group(1)] = m.group(2)
        elif lines[i].strip(): break
        i += 1
    return d, '\n'.join(lines[i:]).strip('\n')

def _false(v): return str(v).strip().lower() in ('false', 'no', '0')

_re_summary = re.compile(r'^>[ \t]*(\S.*)\n((?:>[ \t]*\S.*(?:\n|$))+)', re.M)

def join_summary(nb):
    "Join a `> summary` written over several `>` lines into one line in the title cell (nbdev keeps only the first line)."
    for c in nb.cells:
        if c.cell_type != 'markdown' or not re.search(r'^#\s+\S', c.source, re.M): continue
        def one(m):
            rest = [l.lstrip('>').strip() for l in m.group(2).splitlines()]
            return '> ' + ' '.join([m.group(1).strip()] + rest) + ('\n' if m.group(2).endswith('\n') else '')
        c.source = _re_summary.sub(one, c.source, count=1)
        return

def process(path:Path):
    "Run nbdev's docs processors on one notebook; return (nbformat notebook, frontmatter dict)."
    import nbformat, yaml
    from fastcore.nbio import read_nb, nb2str
    from nbdev.processors import FilterDefaults
    nb = read_nb(path)
    join_summary(nb)
    proc = FilterDefaults().nb_proc(nb)
    try: proc.process()
    finally:
        for p in proc.procs:   # the in-process IPython shell nbdev ran show_doc in: stop its loop, skip its atexit
            k = getattr(p, 'k', None)
            if k is None: continue
            atexit.unregister(k.atexit_operations)
            k.loop.call_soon_threadsafe(k.loop.stop)
    nb = nbformat.reads(nb2str(nb), as_version=4)
    fm = {}
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.lstrip().startswith('---'):
        fm = yaml.safe_load(nb.cells[0].source.strip().strip('-')) or {}
        nb.cells.pop(0)
    return nb, fm

def quarto_options(nb):
    "Apply the Quarto cell options nbdev leaves in code cells (echo, include, output, code-fold), then drop them."
    cells = []
    for c in nb.cells:
        c.metadata.pop('execution', None)   # execnb's timings (floats) fail nbformat's schema
        if c.cell_type == 'code':
            d, c.source = split_directives(c.source)
            if _false(d.get('include', '')): continue
            if _false(d.get('echo', '')) or not c.source.strip():
                c.metadata.setdefault('transient', {})['remove_source'] = True
            if _false(d.get('output', '')): c.outputs = []
            if d.get('code-fold', 'false').lower() in ('true', 'show'):
                c.metadata['sb_fold'] = {'open': d['code-fold'].lower() == 'show',
                                         'summary': d.get('code-summary', 'Code').strip('"\'')}
            if c.metadata.get('transient', {}).get('remove_source') and not c.outputs: continue
        cells.append(c)
    nb.cells = cells

_re_attr_link = re.compile(r'\[([^\]]*)\]\(([^)\s]*)\)\{([^}]*)\}')
_re_attr = re.compile(r'([\w-]+)=("[^"]*"|\S+)|([.#])([\w-]+)')

def attr_links(md:str) -> str:
    "Pandoc links with attributes (`[source](url){target=\"_blank\" .cls}`, as show_doc writes) as HTML links."
    def f(m):
        text, url, attrs = m.groups()
        kv, cls = [], []
        for k, v, mark, name in _re_attr.findall(attrs):
            if k: kv.append(f'{k}="{html.escape(v.strip(chr(34)), quote=True)}"')
            elif mark == '.': cls.append(name)
            else: kv.append(f'id="{name}"')
        if cls: kv.append(f'class="{" ".join(cls)}"')
        return f'<a href="{html.escape(url, quote=True)}" {" ".join(kv)}>{html.escape(text)}</a>'
    return _re_attr_link.sub(f, md)

def pandoc_md(nb):
    "Rewrite the Pandoc-only markdown nbdev emits (attribute links) in markdown cells and markdown outputs."
    for c in nb.cells:
        if c.cell_type == 'markdown': c.source = attr_links(c.source)
        for o in c.get('outputs', []):
            if 'text/markdown' in o.get('data', {}): o.data['text/markdown'] = attr_links(o.data['text/markdown'])

def widget_state(nb):
    "Keep saved widget state only when it holds models and a cell shows a widget (else no manager JS is loaded)."
    mime = 'application/vnd.jupyter.widget-state+json'
    st = nb.metadata.get('widgets', {}).get(mime, {})
    shows = any('application/vnd.jupyter.widget-view+json' in o.get('data', {})
                for c in nb.cells if c.cell_type == 'code' for o in c.outputs)
    if not (st.get('state') and shows): nb.metadata.pop('widgets', None)

# ---------------------------------------------------------------- HTML
def slug(text:str, seen:dict) -> str:
    "Pandoc's (so Quarto's) heading identifier for `text`, made unique on the page."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower(), flags=re.UNICODE)
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s) or 'section'
    n = seen.get(s, 0); seen[s] = n + 1
    return s if n == 0 else f'{s}-{n}'

# show_doc's signature: a heading, then a highlighted `def`/`class` block whose docments may hold TeX ($\rho$)
_re_sig = re.compile(r'(</h[2-6]>\s*<div class="highlight"><pre)(>\s*<span></span><span class="k">(?:def|class)</span>)')

_re_h = re.compile(r'<h([1-6]) id="([^"]*)">(.*?)<a class="anchor-link" href="#[^"]*">(.*?)</a>\s*</h\1>', re.S)

def postprocess(page:str, rel_root:str, doc_prefix:str) -> str:
    "Quarto-style heading ids, and links to this site's own pages made relative (so they work offline)."
    seen = {}
    def h(m):
        lvl, _, inner, anchor = m.groups()
        i = slug(html.unescape(re.sub(r'<[^>]+>', '', inner)), seen)
        return f'<h{lvl} id="{i}">{inner}<a class="anchor-link" href="#{i}">{anchor}</a></h{lvl}>'
    page = _re_h.sub(h, page)
    page = _re_sig.sub(r'\1 class="tex2jax_process"\2', page)   # MathJax skips <pre> unless marked so
    if doc_prefix: page = page.replace(f'href="{doc_prefix}', f'href="{rel_root}')
    def nblink(m):  # markdown links to notebooks -> their pages
        target, frag = m.group(1), m.group(2) or ''
        return f'href="{page_of(Path(target)).as_posix()}{frag}"'
    return re.sub(r'href="(?![a-z]+:|/|#)([^"#]+\.ipynb)(#[^"]*)?"', nblink, page)

def nav_html(pages:list, cur:Path, site_title:str) -> str:
    "The sidebar: every page, grouped by folder, titled by its notebook's H1, the current one marked."
    up = '../' * (len(cur.parts) - 1)
    out = [f'<a class="sb-site" href="{up}index.html">{html.escape(site_title)}</a>', '<ul>']
    group = None
    for p in pages:
        g = p['page'].parent.as_posix()
        if g != group and g != '.':
            out.append(f'<li class="sb-group">{html.escape(g.replace("_", " ").replace("/", " / ").title())}</li>')
        group = g
        cls = ' class="sb-current" aria-current="page"' if p['page'] == cur else ''
        out.append(f'<li><a{cls} href="{up}{p["page"].as_posix()}">{html.escape(p["title"])}</a></li>')
    return '\n'.join(out + ['</ul>'])

TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_mathjax -%}
<link rel="icon" href="data:,">
<script>
window.MathJax = {
  tex: {inlineMath: [['$','$'], ['\\(','\\)']], displayMath: [['$$','$$'], ['\\[','\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams',
        packages: {'[-]': ['noundefined']}},   // an unknown macro is an error (the browser test catches it)
  options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'},
  chtml: {displayAlign: 'center'}
};
</script>
<script src="{{ resources.sb.root }}_static/mathjax/tex-chtml-full.js"></script>
<script>
// the widget manager typesets labels through MathJax 2's Hub.Queue: map that onto MathJax 3
MathJax.Hub = {Queue: function () {
  for (var i = 0; i < arguments.length; i++) {
    var a = arguments[i];
    if (Array.isArray(a) && a[0] === 'Typeset') (function (el) {
      MathJax.startup.promise.then(function () { return MathJax.typesetPromise(el ? [el] : undefined); });
    })(a[2]);
  }
}};
</script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<link rel="stylesheet" href="{{ resources.sb.root }}_static/site.css">
{%- endblock html_head_css -%}
{%- block body_header -%}
<body class="jp-Notebook sb-page" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<nav class="sb-sidebar" aria-label="Pages">
{{ resources.sb.nav }}
</nav>
<main class="sb-main">
{%- endblock body_header -%}
{% block input_group -%}
{%- if cell.metadata.sb_fold -%}
<details class="sb-fold"{{ ' open' if cell.metadata.sb_fold.open }}><summary>{{ cell.metadata.sb_fold.summary | escape }}</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock input_group %}
"""

SITE_CSS = """
:root { --sb-side: 15rem; }
body.sb-page { margin: 0; padding: 0; background: #fff; display: flex; align-items: flex-start; }
.sb-sidebar { position: sticky; top: 0; flex: 0 0 var(--sb-side); height: 100vh; overflow-y: auto;
  box-sizing: border-box; padding: 1.2rem 1rem; background: #f7f7f9; border-right: 1px solid #e3e3e8;
  font-family: var(--jp-ui-font-family); font-size: 14px; }
.sb-sidebar .sb-site { display: block; font-weight: 700; font-size: 17px; color: #222; text-decoration: none;
  margin-bottom: .8rem; }
.sb-sidebar ul { list-style: none; margin: 0; padding: 0; }
.sb-sidebar li a { display: block; padding: .25rem .5rem; border-radius: 4px; color: #2a5db0; text-decoration: none; }
.sb-sidebar li a:hover { background: #e9eef7; }
.sb-sidebar li a.sb-current { background: #2a5db0; color: #fff; }
.sb-sidebar li.sb-group { margin-top: .9rem; padding: 0 .5rem .2rem; color: #666; font-size: 12px;
  text-transform: uppercase; letter-spacing: .05em; }
main.sb-main { flex: 1 1 auto; min-width: 0; max-width: 72rem; padding: 1.5rem 2.5rem 4rem; box-sizing: border-box; }
main.sb-main h1:first-child, .sb-main .jp-MarkdownCell:first-child h1 { margin-top: 0; }
.sb-main .jp-RenderedMarkdown pre { background: var(--jp-cell-editor-background); padding: .5rem .7rem;
  border: 1px solid var(--jp-cell-editor-border-color); border-radius: 2px; }
.sb-main .jp-RenderedHTMLCommon a code { color: inherit; }
.sb-main .jp-RenderedHTMLCommon blockquote { color: #555; border-left: 4px solid #c9d6ee; }
.sb-main .jp-OutputArea-output[data-mime-type="text/markdown"] { padding: 0; }
.sb-main .jp-OutputArea-output[data-mime-type="text/markdown"] hr { margin: 1.2rem 0 .6rem; }
.sb-main .jp-InputArea, .sb-main .jp-InputArea-editor { overflow-x: auto; }
/* long code lines wrap instead of hiding behind a scroll bar (a screenshot or a printout shows all of them) */
.sb-main .jp-InputArea-editor pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.sb-main .jupyter-widgets { font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); }
/* a saved ipywidgets Image keeps its own size (a flex column would stretch it, blurring the figure) */
.sb-main .widget-image { align-self: flex-start; max-width: 100%; height: auto; }
/* display math wider than the column scrolls instead of running under the page edge */
.sb-main mjx-container[display="true"] { max-width: 100%; overflow-x: auto; overflow-y: hidden; }
details.sb-fold > summary { cursor: pointer; color: #555; font-size: 13px; margin: .2rem 0; }
@media (max-width: 800px) {
  body.sb-page { display: block; }
  .sb-sidebar { position: static; height: auto; border-right: 0; border-bottom: 1px solid #e3e3e8; }
  main.sb-main { padding: 1rem; }
}
"""

def exporter():
    "One nbconvert HTML exporter (lab template + our sidebar/MathJax 3 overrides) reused for every page."
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    ex = HTMLExporter(template_name='lab', extra_loaders=[DictLoader({'sbdocs.html.j2': TEMPLATE})],
                      exclude_input_prompt=True, exclude_output_prompt=True)
    ex.template_file = 'sbdocs.html.j2'
    return ex

# ---------------------------------------------------------------- build
@contextlib.contextmanager
def project_env(proj):
    """Run nbdev's processors as nbdev's docs workers do: from the project root `proj` (they read the config from
    the cwd), with the package importable (`sys.path`, and `PYTHONPATH` for subprocesses) and `IN_TEST=1`.
    The cwd, `sys.path` and the whole environment are restored on exit, also on error."""
    proj, cwd = str(proj), os.getcwd()
    pypath = os.pathsep.join([proj] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    with mock.patch.dict(os.environ, {'IN_TEST': '1', 'PYTHONPATH': pypath}):
        os.chdir(proj); sys.path.insert(0, proj)
        try: yield
        finally:
            os.chdir(cwd)
            with contextlib.suppress(ValueError): sys.path.remove(proj)

def build(nbs:Path=None, out:Path=None, cache:Path=None, quiet:bool=False) -> list:
    "Build the site; return the list of pages built. Raises BuildError naming every notebook that failed."
    t0 = time.time()
    nbs = Path(nbs or ROOT/'nbs').resolve()
    if not nbs.is_dir(): raise BuildError(f"No notebook folder at {nbs}: pass --nbs <folder with the notebooks>.")
    from nbdev.config import get_config
    cfg = get_config(nbs)
    proj = Path(cfg.config_path)
    out = Path(out or proj/cfg.get('doc_path', '_docs')).resolve()
    cache = Path(cache or proj/'.cache'/'npm').resolve()
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    pkgs = fetch_npm(cache)
    doc_prefix = (cfg.get('doc_host', '') or '').rstrip('/') + (cfg.get('doc_baseurl', '') or '').rstrip('/') + '/'
    if doc_prefix == '/': doc_prefix = ''
    site_title = cfg.get('title', None) or cfg.lib_name

    pages, failed = [], []
    with project_env(proj):   # nbdev's processors read the config from the cwd and execute cells in-process
        import matplotlib; matplotlib.use('Agg')
        for path in find_notebooks(nbs):
            rel = path.relative_to(nbs)
            t = time.time()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore', DeprecationWarning)
                    nb, fm = process(path)
                quarto_options(nb); pandoc_md(nb); widget_state(nb)
                nb.cells = [c for c in nb.cells    # nbdev's "autogenerated" comment would render as an empty cell
                            if not (c.cell_type == 'markdown' and re.fullmatch(r'\s*<!--.*?-->\s*', c.source, re.S))]
            except Exception as e:
                msg = re.sub(r'\s+', ' ', f'{type(e).__name__}: {e}')[:600]
                failed.append(f'nbs/{rel.as_posix()}: {msg}')
                log(f'  FAILED {rel}  {msg}')
                continue
            title = str(fm.get('title') or rel.stem)
            pages.append(dict(nb=nb, fm=fm, rel=rel, page=page_of(rel), title=title))
            log(f'  processed {rel} ({time.time()-t:.1f}s)')

    t1 = time.time()
    import nbformat
    tmp = out.with_name(out.name + '.tmp')   # built beside `out`, swapped in only when every page converted
    shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
    try:
        vendor(pkgs, tmp/'_static')
        for f in nbs.rglob('*'):   # figures and other files the notebooks' markdown refers to
            rel = f.relative_to(nbs)
            if f.is_file() and f.suffix.lower() in IMG_EXTS and not any(re.match(r'^[_.]', p) for p in rel.parts):
                (tmp/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, tmp/rel)
        ex = exporter()
        for p in pages:
            nb, fm, page = p['nb'], p['fm'], p['page']
            root = '../' * (len(page.parts) - 1)
            head = f"# {p['title']}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
            nb.metadata['title'] = p['title'] if page.as_posix() == 'index.html' else f"{p['title']} – {site_title}"
            ex.require_js_url = f'{root}_static/require.js'
            ex.widget_renderer_url = f'{root}_static/html-manager/embed-amd.js'
            res = {'sb': {'root': root, 'nav': nav_html(pages, page, site_title)}, 'metadata': {'name': p['title']}}
            try: body, _ = ex.from_notebook_node(nb, resources=res)
            except Exception as e:
                failed.append(f"nbs/{p['rel'].as_posix()}: HTML conversion failed: {type(e).__name__}: {e}"); continue
            (tmp/page).parent.mkdir(parents=True, exist_ok=True)
            (tmp/page).write_text(postprocess(body, root, doc_prefix), encoding='utf-8')
        if failed:
            raise BuildError(f"The docs build failed for {len(failed)} notebook(s); fix them and rerun:\n  " + '\n  '.join(failed))
        shutil.rmtree(out, ignore_errors=True); tmp.rename(out)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    log(f'Built {len(pages)} pages into {out} in {time.time()-t0:.1f}s '
        f'(nbdev processing {t1-t0:.1f}s, HTML {time.time()-t1:.1f}s)')
    return [p['page'] for p in pages]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nbs', default=None, help='folder with the notebooks (default: nbs_path of the project)')
    ap.add_argument('--out', default=None, help='output folder (default: _docs)')
    ap.add_argument('--cache', default=None, help='where npm packages are kept (default: .cache/npm)')
    ap.add_argument('-q', '--quiet', action='store_true', help='print only errors')
    a = ap.parse_args(argv)
    try: build(a.nbs, a.out, a.cache, a.quiet)
    except BuildError as e:
        print(e, file=sys.stderr); return 1
    return 0

if __name__ == '__main__': sys.exit(main())
