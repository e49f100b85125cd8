"""Browser check of the offline docs site: build it once (tools/build_docs.py), serve it on 127.0.0.1,
load every page in headless Chromium with every outside request aborted, and check what a reader sees."""
import functools, http.server, importlib.util, os, re, shutil, subprocess, sys, threading, time
from pathlib import Path
import pytest
from helpers import ROOT

# SB_DOCS_NBS: check another notebook folder; SB_DOCS_SITE: check an already built site (make docs) instead of building;
# SB_DOCS_SHOTS: keep the page screenshots there
NBS = Path(os.environ.get('SB_DOCS_NBS', ROOT/'nbs'))

def _load_tool(name:str, file:str):
    "Import tools/`file` as module `name` (tools/ is not a package)."
    spec = importlib.util.spec_from_file_location(name, ROOT/'tools'/file)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

bd = _load_tool('build_docs', 'build_docs.py')
PAGES = [bd.page_of(p.relative_to(NBS)).as_posix() for p in bd.find_notebooks(NBS)]

@pytest.fixture(scope='session')
def site(tmp_path_factory):
    "The site, built once into a temporary folder by the same command `make docs` runs (or SB_DOCS_SITE, already built)."
    if os.environ.get('SB_DOCS_SITE'): out = Path(os.environ['SB_DOCS_SITE']).resolve()
    else: out = _build(tmp_path_factory.mktemp('docs')/'_docs')
    built = sorted(str(p.relative_to(out).as_posix()) for p in out.rglob('*.html') if '_static' not in p.parts)
    assert built == sorted(PAGES), f'pages built {built} != notebooks {sorted(PAGES)}'
    return out

def _run_build(out:Path, nbs:Path=None) -> subprocess.CompletedProcess:
    "Run tools/build_docs.py (the command `make docs` runs) on `nbs` into `out`."
    return subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--nbs', str(nbs or NBS), '--out', str(out), '-q'],
                          capture_output=True, text=True, cwd=ROOT)

def _build(out:Path, nbs:Path=None) -> Path:
    r = _run_build(out, nbs)
    if r.returncode: pytest.fail(f'tools/build_docs.py failed:\n{r.stderr[-3000:]}', pytrace=False)
    return out

@pytest.fixture(scope='session')
def server(site):
    "Base URL of a thread http.server serving the site on a free 127.0.0.1 port."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    th = threading.Thread(target=httpd.serve_forever, daemon=True); th.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown(); httpd.server_close()

@pytest.fixture(scope='session')
def shots(tmp_path_factory):
    d = Path(os.environ.get('SB_DOCS_SHOTS') or tmp_path_factory.mktemp('shots'))
    d.mkdir(parents=True, exist_ok=True)
    return d

_re_tex = re.compile(r'\$\$|\\\(|\\\[|\$[^\s$][^$\n]*?\$')
def _has_tex(page_html:str) -> bool:
    "Whether the page's prose (not code, scripts or styles) holds TeX."
    txt = re.sub(r'<(script|style|pre|code)\b.*?</\1>', '', page_html, flags=re.S|re.I)
    return bool(_re_tex.search(re.sub(r'<[^>]+>', ' ', txt)))

def test_every_notebook_has_a_page(site):
    assert PAGES and 'index.html' in PAGES, f'no index page among {PAGES}'
    for p in PAGES: assert (site/p).is_file(), p

def check_page(browser, base:str, page:str, html_src:str, shot=None, wait_ms=20000) -> tuple[list, list]:
    "Load `base+page` with outside requests aborted; return (problems a reader would hit, sidebar links)."
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
    ctx.set_default_timeout(90_000)   # 2 cores shared with other jobs: a heavy page can take a while to load
    pg = ctx.new_page()
    errors, outside, failed, bad = [], [], [], []
    pg.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.on('requestfailed', lambda r: None if r.url in outside else failed.append(f'{r.url} ({r.failure})'))
    inflight = set()   # our own count of open requests (Playwright's 'networkidle' sometimes never fires on a big page)
    pg.on('request', lambda r: inflight.add(r))
    pg.on('requestfinished', lambda r: inflight.discard(r)); pg.on('requestfailed', lambda r: inflight.discard(r))
    pg.on('response', lambda r: bad.append(f'{r.url} -> {r.status}') if r.status >= 400 else None)
    def route(r):
        if r.request.url.startswith(base) or r.request.url.startswith('data:'): r.continue_()
        else: outside.append(r.request.url); r.abort()
    pg.route('**/*', route)
    problems = []
    try:
        pg.goto(base + page, wait_until='load')
        tex, widgets = _has_tex(html_src), 'application/vnd.jupyter.widget-view+json' in html_src
        if tex:   # MathJax 3 resolves startup.promise once it has typeset the page
            try:
                pg.wait_for_function('() => window.MathJax && MathJax.startup && MathJax.startup.promise', timeout=wait_ms)
                pg.evaluate('() => MathJax.startup.promise')
            except Exception as e: problems.append(f'MathJax never started: {type(e).__name__}')
        if widgets:
            try: pg.wait_for_selector('.jupyter-widgets', timeout=wait_ms)
            except Exception: problems.append('saved widgets did not render')
        quiet, t_end = 0, time.time() + wait_ms / 1000   # settled: no open request for 0.5 s and every <img> decoded
        while quiet < 5 and time.time() < t_end:
            done = not inflight and pg.evaluate('() => Array.from(document.images).every(i => i.complete)')
            quiet = quiet + 1 if done else 0
            pg.wait_for_timeout(100)
        if quiet < 5: problems.append(f'the page never settled: {len(inflight)} open request(s) {[r.url[:80] for r in inflight]}')
        if shot: pg.screenshot(path=str(shot), full_page=True)
        if outside: problems.append(f'asked for outside resources: {outside}')
        if failed: problems.append(f'failed requests: {failed}')
        if bad: problems.append(f'error responses: {bad}')
        if errors: problems.append(f'console/page errors: {errors}')
        imgs = pg.eval_on_selector_all('img', 'els => els.map(e => [(e.getAttribute("src") || "").slice(0, 60), e.complete && e.naturalWidth > 0])')
        if (broken := [s for s, ok in imgs if not ok]): problems.append(f'images that did not load: {broken}')
        if tex:
            if pg.locator('mjx-container').count() == 0: problems.append('has TeX but MathJax rendered none of it')
            raw = pg.evaluate('''() => { const m = (document.querySelector('main') || document.body).cloneNode(true);
                m.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
                return m.innerText; }''')
            if (left := re.findall(r'.{0,30}(?:\$\$|\\\(|\\\[).{0,30}', raw)): problems.append(f'TeX left unrendered: {left}')
            bad_tex = pg.eval_on_selector_all('mjx-merror', 'els => els.map(e => e.getAttribute("data-mjx-error"))')
            if bad_tex: problems.append(f'MathJax could not typeset: {bad_tex}')
        nav = pg.eval_on_selector_all('nav.sb-sidebar li a', 'els => els.map(e => e.href)')
    finally:
        ctx.close()
    return problems, nav

@pytest.mark.parametrize('page', PAGES)
def test_page_renders_offline(page, site, server, browser, shots):
    problems, nav = check_page(browser, server, page, (site/page).read_text(encoding='utf-8'),
                               shots/(page.replace('/', '__') + '.png'))
    assert not problems, f'{page}: ' + '; '.join(problems)
    assert sorted(nav) == sorted(server + p for p in PAGES), f'{page}: the sidebar does not link every page: {nav}'

BAD_PAGE = r"""<!DOCTYPE html><html><head><link rel="icon" href="data:,">
<script>window.MathJax = {tex: {inlineMath: [['$', '$']], packages: {'[-]': ['noundefined']}}};</script>
<script src="_static/mathjax/tex-chtml-full.js"></script></head><body><main>
<p>Fine: $\frac{1}{2}$. Broken: $\notamacro{x}$.</p>
<img src="missing.png"><img src="https://example.com/x.png">
<script>console.error("boom")</script></main></body></html>"""
RAW_TEX_PAGE = '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><main><p>$$x^2$$</p></main></body></html>'

def test_checker_catches_broken_pages(site, server, browser):
    "The page check is not vacuous: a page with each defect is reported for each of them."
    (site/'_bad.html').write_text(BAD_PAGE); (site/'_raw.html').write_text(RAW_TEX_PAGE)
    try:
        problems, _ = check_page(browser, server, '_bad.html', BAD_PAGE)
        text = ' | '.join(problems)
        for want in ('outside resources', 'example.com', 'missing.png -> 404', 'boom',
                     'images that did not load', 'MathJax could not typeset'):
            assert want in text, f'check_page missed {want!r}: {problems}'
        problems, _ = check_page(browser, server, '_raw.html', RAW_TEX_PAGE, wait_ms=1500)
        assert any('MathJax' in p for p in problems), problems
    finally:
        (site/'_bad.html').unlink(); (site/'_raw.html').unlink()


# ---------------------------------------------------------------- the build on a synthetic project (no browser needed)
def _project(tmp:Path) -> Path:
    "A throwaway nbdev project: this repo's pyproject.toml and package, and an empty nbs/ (returned)."
    (tmp/'nbs').mkdir(parents=True)
    (tmp/'pyproject.toml').write_text((ROOT/'pyproject.toml').read_text())
    shutil.copytree(ROOT/'sharpbalance', tmp/'sharpbalance')
    return tmp/'nbs'

def _mini_nbs(tmp:Path, broken=False) -> Path:
    "A throwaway project: one module notebook using nbdev's directives (and optionally a notebook that breaks the build)."
    from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell, new_output
    import nbformat
    (_project(tmp)/'tutorials').mkdir()
    out = lambda t: [new_output('stream', name='stdout', text=t)]
    nbformat.write(new_notebook(cells=[
        new_code_cell('#| default_exp mini'),
        new_markdown_cell('# Mini module\n\n> A summary line\n> that goes on.'),
        new_code_cell('#| export\ndef twice(x:int, # the number $\\rho$\n          ):\n    "Double `x`."\n    return 2*x'),
        new_code_cell('#| exports\ndef thrice(x): "Triple `x`."; return 3*x'),
        new_code_cell('#| hide\nprint("HIDDEN-CELL")', outputs=out('HIDDEN-OUT\n')),
        new_code_cell('#| echo: false\nprint("ECHO-SRC")', outputs=out('ECHO-OUT\n')),
        new_code_cell('#| include: false\nprint("INCL-SRC")', outputs=out('INCL-OUT\n')),
        new_code_cell('#| output: false\nprint("OUTF-SRC")', outputs=out('OUTF-OUT\n')),
        new_markdown_cell('See [the tutorial](tutorials/walk.ipynb) and `set_seed`.'),
    ]), tmp/'nbs'/'00_mini.ipynb')
    nbformat.write(new_notebook(cells=[new_markdown_cell('# A walk\n\n> Back to [mini](../00_mini.ipynb).')]),
                   tmp/'nbs'/'tutorials'/'walk.ipynb')
    nbformat.write(new_notebook(cells=[new_markdown_cell('# Skipped')]), tmp/'nbs'/'_draft.ipynb')
    if broken:   # nbdev executes cells that contain an import at docs time: this one raises
        nbformat.write(new_notebook(cells=[new_markdown_cell('# Broken'), new_code_cell('#| export\ndef f(): pass'),
                                            new_code_cell('import os; undefined_name')]),
                       tmp/'nbs'/'01_broken.ipynb')
    return tmp/'nbs'

def test_build_applies_nbdev_directives(tmp_path):
    nbs = _mini_nbs(tmp_path/'proj')
    out = _build(tmp_path/'site', nbs)
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob('*.html') if '_static' not in p.parts)
    assert pages == ['mini.html', 'tutorials/walk.html'], pages          # prefix dropped, _draft skipped
    h = (out/'mini.html').read_text()
    assert '<title>Mini module' in h and 'A summary line that goes on.' in h   # a two-line summary is kept whole
    assert 'id="twice"' in h and 'the number' in h, 'show_doc of the exported function (with docments) is missing'
    assert re.search(r'id="twice".*?<pre class="tex2jax_process">.*?the number \$\\rho\$', h, re.S), \
        "the signature's docments should be typeset (MathJax skips an unmarked <pre>)"
    assert h.count('tex2jax_process"') == 2, 'only show_doc signatures (twice, thrice) are marked for MathJax'
    assert 'def twice' not in re.sub(r'<div class="jp-RenderedHTMLCommon.*?</div>', '', h, flags=re.S), \
        'the exported source should not be shown (only its show_doc)'
    assert '<details class="sb-fold"' in h and 'Exported source' in h       # #| exports: folded source
    for gone in ('HIDDEN', 'ECHO-SRC', 'INCL-', 'OUTF-OUT', '#|'):
        assert gone not in h, f'{gone} should not be on the page'
    assert 'ECHO-OUT' in h and 'OUTF-SRC' in h
    assert 'href="tutorials/walk.html"' in h and 'href="core.html#set_seed"' in h   # links made local
    w = (out/'tutorials'/'walk.html').read_text()
    assert 'href="../mini.html"' in w and '../_static/require.js' in w
    assert not re.search(r'(src|href)="https?://(?!github\.com)', h + w), 'a page refers to an outside resource'

def test_build_names_the_broken_notebook(tmp_path):
    nbs = _mini_nbs(tmp_path/'proj', broken=True)
    r = _run_build(tmp_path/'site', nbs)
    assert r.returncode == 1 and 'nbs/01_broken.ipynb' in r.stderr and 'undefined_name' in r.stderr, r.stderr[-2000:]
    assert 'nbs/00_mini.ipynb' not in r.stderr and not (tmp_path/'site').exists()

# ---------------------------------------------------------------- README generator (no browser needed)
def _tiny_project(tmp:Path) -> Path:
    "A throwaway nbdev project whose index notebook has a hidden cell, an echo:false cell, a figure and links."
    import base64, nbformat
    from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell, new_output
    _project(tmp)
    png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')
    nb = new_notebook(cells=[
        new_code_cell('#| hide\nsecret = 1'),
        new_markdown_cell('# tinyproj\n\n> One line summary with $\\rho$.'),
        new_markdown_cell('See [the core page](00_core.ipynb) and ![a dot](images/dot.png).'),
        new_code_cell('print(1 + 1)', outputs=[new_output('stream', name='stdout', text='2\n')]),
        new_code_cell('#| echo: false\nprint("shown alone")', outputs=[new_output('stream', name='stdout', text='shown alone\n')]),
        new_code_cell('plot()', outputs=[new_output('display_data', data={'image/png': base64.b64encode(png).decode(), 'text/plain': '<Figure>'})]),
    ])
    nbformat.write(nb, tmp/'nbs'/'index.ipynb')
    return tmp

def _readme(*args, root, capsys=None):
    "Run tools/readme.py's main in-process (one import of nbdev/nbconvert for all calls); (rc, stdout)."
    rc = _load_tool('readme_tool', 'readme.py').main([*args, '--root', str(root)])
    return rc, (capsys.readouterr().out if capsys else '')

def test_readme_written_from_index_and_checked(tmp_path, capsys):
    proj = _tiny_project(tmp_path/'proj')
    rc, out = _readme('--check', root=proj, capsys=capsys)
    assert rc == 1 and out.strip() == ('README.md is out of date with nbs/index.ipynb: run '
                                       '`make readme` (or nbdev-readme) and commit it.'), (rc, out)
    assert _readme(root=proj)[0] == 0
    md = (proj/'README.md').read_text()
    assert md.startswith('# tinyproj\n\n> One line summary with $\\rho$.\n'), md[:200]
    assert 'secret' not in md and '#|' not in md and 'print("shown alone")' not in md and '    shown alone' in md, md
    assert '```python\nprint(1 + 1)\n```' in md and '    2' in md, md
    assert '](https://sharpbalance.github.io/sharpbalance/core.html)' in md, md      # notebook link -> docs site
    assert '![a dot](nbs/images/dot.png)' in md, md                                  # relative image -> from the root
    figs = re.findall(r'!\[[^\]]*\]\((index_files/[^)]+)\)', md)
    assert len(figs) == 1 and (proj/figs[0]).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', figs
    assert _readme('--check', root=proj)[0] == 0
    (proj/'README.md').write_text(md.replace('tinyproj', 'edited'))
    assert _readme('--check', root=proj)[0] == 1
    _readme(root=proj); (proj/figs[0]).write_bytes(b'not the figure')
    assert _readme('--check', root=proj)[0] == 1, 'a changed figure must make the README stale'
