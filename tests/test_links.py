"""Every link in README.md works where it is read, and the project's URLs agree, without the network.

- On the repository page: a relative link names a file or folder of the repository (an anchor, a heading of the
  README); a link into this repository's GitHub URL names a file (`blob/<branch>/<path>`) or one of its pages.
- On the docs site: a link under the Documentation URL names a page that tools/build_docs.py makes from a notebook
  (`build_docs.find_notebooks` / `page_of`, no rendering), and its anchor a symbol (nbdev's `_modidx`) or a heading
  of that notebook. The site's home page, nbs/index.ipynb, is checked the same way (relative links from index.html).
- pyproject.toml's [project.urls], nbdev's settings and nbs/nbdev.yml agree; any other link is https.

SB_DOCS_SITE=<built site> (as `make docs` sets it) also checks that each linked page is in that folder."""
import importlib.util, json, os, re, tomllib
from pathlib import Path
from urllib.parse import urlsplit
import pytest
from helpers import ROOT

PROJ = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']
URLS = PROJ['urls']
REPO = URLS['Repository'].rstrip('/')
DOCS = URLS['Documentation'].rstrip('/')
BRANCH = 'main'
REPO_PAGES = {'', 'issues', 'pulls', 'actions', 'releases', 'discussions', 'wiki', 'security'}

def _load_build_docs():
    spec = importlib.util.spec_from_file_location('build_docs_links', ROOT/'tools'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

bd = _load_build_docs()
NBS = ROOT/'nbs'
NOTEBOOKS = {bd.page_of(p.relative_to(NBS)).as_posix(): p for p in bd.find_notebooks(NBS)}   # page -> notebook

# ---------------------------------------------------------------- reading links
_re_fence = re.compile(r'^(```|~~~).*?^\1[ \t]*$', re.M | re.S)
_re_code = re.compile(r'`[^`\n]*`')
_re_md_link = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_re_ref_def = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', re.M)
_re_html = re.compile(r'\b(?:href|src)\s*=\s*["\']([^"\']+)["\']', re.I)
_re_auto = re.compile(r'<(https?://[^>\s]+)>')

def links(md:str) -> list[str]:
    "The link targets of a markdown text (inline, reference, autolink and HTML links), code spans and fences left out."
    md = _re_code.sub('', _re_fence.sub('', md))
    return [m.group(1) for r in (_re_md_link, _re_ref_def, _re_html, _re_auto) for m in r.finditer(md)]

def slug(text:str) -> str:
    "GitHub's / Quarto's heading anchor: lowercase, punctuation dropped, spaces to hyphens."
    t = re.sub(r'<[^>]+>|[`*_]', '', text).strip().lower()
    return re.sub(r'\s', '-', re.sub(r'[^\w\- ]', '', t))

def headings(md:str) -> set[str]:
    md = _re_fence.sub('', md)
    return {slug(m.group(1)) for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', md, re.M)}

def nb_markdown(nb:Path) -> str:
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')

def symbol_anchors() -> dict[str, set[str]]:
    "page -> anchors of the exported symbols shown on it (nbdev's `_modidx`)."
    spec = importlib.util.spec_from_file_location('sb_modidx', ROOT/'sharpbalance'/'_modidx.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    out = {}
    for syms in mod.d['syms'].values():
        for url, _ in syms.values():
            page, _, anchor = url.partition('#')
            out.setdefault(page, set()).add(anchor)
    return out

# ---------------------------------------------------------------- checking one link
def site_problem(page:str, anchor:str) -> str | None:
    "Why `page#anchor` of the docs site would not resolve (None when it does)."
    page = page.lstrip('/') or 'index.html'
    if page.endswith('/'): page += 'index.html'
    if page not in NOTEBOOKS:
        return f'no notebook makes the page {page}'
    if os.environ.get('SB_DOCS_SITE') and not (Path(os.environ['SB_DOCS_SITE'])/page).is_file():
        return f'{page} is not in the built site {os.environ["SB_DOCS_SITE"]}'
    if anchor and anchor not in symbol_anchors().get(page, set()) | headings(nb_markdown(NOTEBOOKS[page])):
        return f'{page} has no symbol or heading #{anchor}'
    return None

def repo_problem(rest:str) -> str | None:
    "Why `<Repository URL>/<rest>` would not resolve (None when it does)."
    parts = rest.strip('/').split('/')
    if parts[0] in ('blob', 'tree', 'raw') and len(parts) >= 3:
        if parts[1] != BRANCH: return f'links to branch {parts[1]!r}, not {BRANCH!r}'
        path = '/'.join(parts[2:])
        return None if (ROOT/path).exists() else f'no file {path} in the repository'
    return None if parts[0] in REPO_PAGES else f'unknown repository page {rest!r}'

def url_problem(target:str, base:str, here:Path, own_headings:set) -> str | None:
    """Why the link `target` would not work (None when it does). `base`: 'repo' for a page read on the repository
    (relative links are files), 'site' for a docs page (relative links are pages); `here`: that page's folder."""
    url = urlsplit(target)
    if target.startswith('#'):
        return None if target[1:] in own_headings else f'no heading #{target[1:]}'
    if url.scheme in ('http', 'https'):
        full = f'{url.scheme}://{url.netloc}{url.path}'.rstrip('/')
        if full == DOCS or full.startswith(DOCS + '/'): return site_problem(full[len(DOCS):], url.fragment)
        if full == REPO or full.startswith(REPO + '/'): return repo_problem(full[len(REPO):])
        if url.netloc == urlsplit(DOCS).netloc: return f'on the docs host but not under the Documentation URL {DOCS}'
        if re.match(r'https?://github\.com/[^/]+/' + re.escape(REPO.rsplit('/', 1)[1]) + r'(/|$)', full):
            return f'links to another GitHub repository than {REPO}'
        return None if url.scheme == 'https' else 'plain http'
    if url.scheme == 'mailto': return None
    if url.scheme: return f'unexpected scheme {url.scheme}'
    rel = (here/url.path).resolve()
    if base == 'repo':
        if not rel.exists(): return f'no file {url.path} in the repository (relative to {here.relative_to(ROOT) or "."})'
        return None
    page = rel.relative_to(NBS.resolve()).as_posix() if rel.is_relative_to(NBS.resolve()) else None
    if page is None: return f'{url.path} leaves the site'
    if page.endswith('.ipynb'): page = bd.page_of(Path(page)).as_posix()
    if page.endswith('.html') or page.endswith('/'): return site_problem(page, url.fragment)
    if Path(page).suffix.lower() in bd.IMG_EXTS and (NBS/page).is_file(): return None   # copied into the site
    return f'{url.path} is not a page or an image the site build copies'

def problems(md:str, base:str, here:Path) -> list[str]:
    own = headings(md)
    return [f'{t}: {p}' for t in links(md) if (p := url_problem(t, base, here, own))]

# ---------------------------------------------------------------- the tests
def test_readme_links_work_on_the_repository_page_and_the_site():
    md = (ROOT/'README.md').read_text(encoding='utf-8')
    found = links(md)
    assert any(t.startswith(DOCS) for t in found), f'README.md links no docs page under {DOCS}'
    bad = problems(md, 'repo', ROOT)
    assert not bad, 'README.md links that would not work:\n  ' + '\n  '.join(bad) + f'\nsite pages: {sorted(NOTEBOOKS)}'

def test_site_home_page_links_work():
    "nbs/index.ipynb is the site's index.html (and the README's source): its links, read from index.html."
    bad = problems(nb_markdown(NBS/'index.ipynb'), 'site', NBS)
    assert not bad, ('nbs/index.ipynb links that would not work on the site:\n  ' + '\n  '.join(bad)
                     + f'\nsite pages: {sorted(NOTEBOOKS)}')

def test_project_urls_agree():
    m = re.fullmatch(r'https://github\.com/([\w.-]+)/([\w.-]+)', REPO)
    assert m, f'Repository URL {REPO} is not a GitHub repository URL'
    owner, name = m.groups()
    # .github/workflows/deploy.yaml publishes the site with GitHub Pages: a project site lives here
    assert DOCS == f'https://{owner.lower()}.github.io/{name}', f'Documentation URL {DOCS} is not the Pages site of {REPO}'
    for key, url in URLS.items():
        p = url_problem(url, 'repo', ROOT, set())
        assert p is None, f'[project.urls] {key} = {url}: {p}'
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    assert (cfg.git_url.rstrip('/'), cfg.doc_url.rstrip('/'), cfg.branch) == (REPO, DOCS, BRANCH)
    yml = (NBS/'nbdev.yml').read_text()
    assert f'site-url: "{DOCS}"' in yml and f'repo-url: "{REPO}"' in yml, \
        'nbs/nbdev.yml disagrees with pyproject.toml: nbdev-docs rewrites it (or edit site-url / repo-url to match)'

@pytest.mark.parametrize('target,base,ok', [
    (f'{DOCS}/core.html', 'repo', True),
    (f'{DOCS}/core.html#set_seed', 'repo', True),
    (f'{DOCS}/core.html#no_such_symbol', 'repo', False),
    (f'{DOCS}/no_such_page.html', 'repo', False),
    (f'{DOCS}/', 'repo', True),
    (f'{REPO}/blob/main/LICENSE', 'repo', True),
    (f'{REPO}/blob/main/NO_SUCH_FILE.md', 'repo', False),
    (f'{REPO}/issues', 'repo', True),
    ('https://github.com/someone-else/sharpbalance', 'repo', False),
    ('http://example.com/', 'repo', False),
    ('CONTRIBUTING.md', 'repo', True),
    ('NO_SUCH_FILE.md', 'repo', False),
    ('core.html', 'site', True),
    ('00_core.ipynb', 'site', True),
    ('no_such_page.html', 'site', False),
    ('../CONTRIBUTING.md', 'site', False),
])
def test_the_link_check_is_not_vacuous(target, base, ok):
    p = url_problem(target, base, ROOT if base == 'repo' else NBS, set())
    assert (p is None) == ok, (target, p)
