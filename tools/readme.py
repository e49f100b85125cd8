#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto (stands in for `nbdev-readme`, which needs Quarto).

The notebook goes through nbdev's docs processors (frontmatter from the H1 and `> summary`, `#| hide` and
`#| export` cells dropped, doc links), Quarto cell options are applied (`#| echo: false`, `include`,
`output`), and nbconvert's MarkdownExporter writes GitHub markdown. Figures in outputs are written to
`index_files/figure-commonmark/`, as Quarto names them; relative links to notebooks point at the docs site.

    python tools/readme.py           # write README.md (and its figures)
    python tools/readme.py --check   # exit 1 if README.md is not what this would write
"""
from __future__ import annotations
import argparse, base64, re, shutil, sys, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_docs as bd

STALE = "README.md is out of date with nbs/index.ipynb: run `make readme` (or nbdev-readme) and commit it."
FIG_DIR = 'index_files'   # Quarto's name for the README's supporting files

def _fix_links(md:str, doc_url:str, nbdir:str) -> str:
    "Relative links to notebooks/pages go to the docs site (as nbdev's readme filter does); relative images to nbs/."
    from nbdev.readme_filter import doc_link
    def link(m):
        bang, text, target = m.groups()
        if re.match(r'^([a-z][\w+.-]*:|/|#)', target) or target.startswith(FIG_DIR + '/'): return m.group(0)
        if bang: return f'![{text}]({Path(nbdir, target).as_posix()})'
        return f'[{text}]({doc_link(target, doc_url, ".") if doc_url else target})'
    md = re.sub(r'(!?)\[([^\]]*)\]\(([^)\s]+)\)', link, md)
    def src(m):
        t = m.group(2)
        if re.match(r'^([a-z][\w+.-]*:|/|#)', t) or t.startswith(FIG_DIR + '/'): return m.group(0)
        return f'{m.group(1)}="{Path(nbdir, t).as_posix()}"'
    return re.sub(r'(\bsrc)="([^"]+)"', src, md)

def render(root:Path=None) -> tuple[str, dict] | None:
    "README text and {relative path: bytes} of its figures, or None when the project has no readme notebook."
    import nbformat
    from nbconvert import MarkdownExporter
    from nbdev.config import get_config
    cfg = get_config(root or bd.ROOT)
    proj = Path(cfg.config_path)
    nbpath = Path(cfg.nbs_path)/cfg.get('readme_nb', 'index.ipynb')
    if not nbpath.exists(): return None
    with bd.project_env(proj), warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        nb, fm = bd.process(nbpath)
    bd.quarto_options(nb); bd.pandoc_md(nb)
    nb.metadata.pop('widgets', None)
    nb.metadata.setdefault('language_info', {'name': 'python'})   # jupytext-made notebooks may lack it: fence as python
    files = {}
    for i, c in enumerate(nb.cells):   # markdown attachments become files too
        for name, data in (c.get('attachments') or {}).items():
            mime, b64 = next(iter(data.items()))
            rel = f'{FIG_DIR}/attachments/{name}'
            files[rel] = base64.b64decode(b64)
            c.source = c.source.replace(f'attachment:{name}', rel)
        c.pop('attachments', None)
    head = f"# {fm.get('title') or cfg.lib_name}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
    from traitlets.config import Config
    res = {'output_files_dir': FIG_DIR + '/figure-commonmark', 'unique_key': 'cell'}
    ex = MarkdownExporter(config=Config({'ExtractOutputPreprocessor': {
        'enabled': True, 'output_filename_template': 'cell-{cell_index}-output-{index}{extension}'}}))
    md, res = ex.from_notebook_node(nb, resources=res)
    files.update(res.get('outputs', {}))
    md = _fix_links(md, cfg.get('doc_url', ''), Path(cfg.nbs_path).relative_to(proj).as_posix())
    parts = re.split(r'(^```.*?^```[ \t]*$)', md, flags=re.M|re.S)   # tidy blank lines outside code fences only
    md = ''.join(p if i % 2 else re.sub(r'\n{3,}', '\n\n', re.sub(r'[ \t]+\n', '\n', p)) for i, p in enumerate(parts))
    md = md.strip() + '\n'
    return md, {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()}

def current(proj:Path) -> tuple[str, dict]:
    "What is on disk now: README.md and the files under index_files/."
    readme = proj/'README.md'
    txt = readme.read_text(encoding='utf-8') if readme.exists() else None
    d = proj/FIG_DIR
    files = {f.relative_to(proj).as_posix(): f.read_bytes() for f in d.rglob('*') if f.is_file()} if d.exists() else {}
    return txt, files

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', action='store_true', help='exit 1 if README.md differs from what would be written')
    ap.add_argument('--root', default=str(bd.ROOT), help='project root (default: this repository)')
    a = ap.parse_args(argv)
    from nbdev.config import get_config
    proj = Path(get_config(a.root).config_path)
    out = render(proj)
    if out is None:
        print('No nbs/index.ipynb: nothing to generate README.md from.')
        return 0
    md, files = out
    if a.check:
        if current(proj) != (md, files):
            print(STALE); return 1
        return 0
    shutil.rmtree(proj/FIG_DIR, ignore_errors=True)
    for rel, data in files.items():
        (proj/rel).parent.mkdir(parents=True, exist_ok=True); (proj/rel).write_bytes(data)
    (proj/'README.md').write_text(md, encoding='utf-8')
    print(f'Wrote README.md' + (f' and {len(files)} file(s) under {FIG_DIR}/' if files else ''))
    return 0

if __name__ == '__main__': sys.exit(main())
