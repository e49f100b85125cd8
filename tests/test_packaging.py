"""Packaging and project conventions, checked as a user meets them (about a minute; `-m "not packaging"` leaves it out).

- `python -m build` on a clean copy of the tree makes an sdist and a wheel (built from the sdist) with no setuptools
  warning about the metadata, which `twine check --strict` and `check-wheel-contents` accept, holding the package,
  the license and the documents, and nothing else.
- The wheel, installed into a fresh venv (no editable install; run outside the source tree), imports every module,
  answers `--help` for every console script in [project.scripts], and trains a tiny two-member ensemble.
  The fresh venv gets its dependencies from the venv running the tests, not from the index (a fresh `pip install
  torch torchvision` is 5.5 GB and about two minutes here): a `.pth` file points at a folder of links to exactly the
  distributions the wheel declares, with what they require in turn, so an undeclared import still fails, and pip's
  resolver (offline, `--no-index`) and `pip check` still check every requirement and bound against them.
- The GitHub workflows pass actionlint; the pre-commit hooks run commands that .venv has.
- The Makefile says in one line what is missing (Chromium, npm, Quarto, python3-venv) instead of failing in a tool,
  never calls apt-get when not root, and the `browser` fixture uses Playwright's Chromium when Debian's is absent.

SB_PKG_SRC=<folder>: build from that source tree instead of this checkout."""
import concurrent.futures, email, os, re, shutil, subprocess, sys, tarfile, textwrap, time, tomllib, zipfile
from importlib import metadata
from pathlib import Path
import pytest
from helpers import ROOT, BIN

pytestmark = pytest.mark.packaging
SRC = Path(os.environ.get('SB_PKG_SRC') or ROOT)
PYPROJECT = tomllib.loads((SRC/'pyproject.toml').read_text())
SCRIPTS = PYPROJECT['project']['scripts']
# console scripts whose function another notebook is still writing: skipped (with this reason) until it exists
DOCS = ['LICENSE', 'README.md', 'CONTRIBUTING.md', 'CHANGELOG.md', 'pyproject.toml']
# a warning line of the build, less two that come from the machine, not the project: PYTHONDONTWRITEBYTECODE, and
# pip's note on a configured local index that lacks a package
WARNING = re.compile(r'(?i)warn')
NOT_OURS = re.compile(r'byte-compiling is disabled|WARNING: Location .* is ignored')

def _run(*cmd, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)

def _ok(r, what=''):
    assert r.returncode == 0, f'{what or r.args} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

def _tree_files(src:Path) -> list[str]:
    "The files a commit of `src` would hold: tracked and untracked-not-ignored, as git lists them."
    r = _run('git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard', cwd=src)
    if r.returncode: pytest.fail(f'git ls-files failed in {src}: {r.stderr}', pytrace=False)
    return sorted({f for f in r.stdout.split('\0') if f and (src/f).is_file()})

def _package_files(files) -> set[str]:
    return {f for f in files if f.startswith('sharpbalance/') and f.endswith('.py')}

# ---------------------------------------------------------------- build
@pytest.fixture(scope='session')
def dists(tmp_path_factory):
    "Build the sdist and the wheel from a clean copy of the tree; (sdist, wheel, build log, the copy's files)."
    tmp = tmp_path_factory.mktemp('pkg')
    tree, out = tmp/'tree', tmp/'dist'
    files = _tree_files(SRC)
    for f in files:
        (tree/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(SRC/f, tree/f)
    t = time.time()
    r = _ok(_run(sys.executable, '-m', 'build', '--outdir', out, tree, timeout=600), 'python -m build')
    print(f'build: {time.time()-t:.1f}s')
    sdist, = out.glob('*.tar.gz'); wheel, = out.glob('*.whl')
    return sdist, wheel, r.stdout + r.stderr, files

def test_build_prints_no_warning(dists):
    warned = [l.strip() for l in dists[2].splitlines() if WARNING.search(l) and not NOT_OURS.search(l)]
    assert not warned, 'python -m build warned:\n' + '\n'.join(warned)

def test_twine_and_check_wheel_contents_accept_the_dists(dists):
    sdist, wheel, *_ = dists
    _ok(_run(BIN/'twine', 'check', '--strict', sdist, wheel))
    _ok(_run(BIN/'check-wheel-contents', wheel))

def test_wheel_holds_the_package_license_and_metadata(dists):
    sdist, wheel, _, files = dists
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
        meta = email.message_from_string(z.read(f'{info}/METADATA').decode())
        eps = z.read(f'{info}/entry_points.txt').decode()
    assert {n for n in names if not n.startswith(info)} == _package_files(files), 'the wheel holds other files than sharpbalance/**/*.py'
    assert f'{info}/licenses/LICENSE' in names
    assert meta['License-Expression'] == 'MIT' and meta.get_all('License-File') == ['LICENSE']
    assert not [c for c in meta.get_all('Classifier') or [] if c.startswith('License ::')], 'deprecated license classifier'
    assert meta['Requires-Python'] == PYPROJECT['project']['requires-python']
    for req in meta.get_all('Requires-Dist'):
        assert '>=' in req or '==' in req, f'{req}: every dependency carries the lower bound it was tested with'
    for name, target in SCRIPTS.items():
        assert re.search(rf'^{re.escape(name)} = {re.escape(target)}$', eps, re.M), f'{name} missing from entry_points.txt'

def test_sdist_holds_the_package_and_documents_only(dists):
    sdist, _, _, files = dists
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split('/')[0]
        names = {n.split('/', 1)[1] for n in t.getnames() if '/' in n and t.getmember(n).isfile()}
    assert _package_files(files) | set(DOCS) <= names, sorted(_package_files(files) | set(DOCS) - names)
    extra = {n for n in names - _package_files(files) - set(DOCS)
             if not (n in ('PKG-INFO', 'setup.cfg', 'MANIFEST.in') or n.startswith('sharpbalance.egg-info/'))}
    assert not extra, f'the sdist {top} holds files it should not: {sorted(extra)}'

# ---------------------------------------------------------------- a fresh venv with the wheel
def _requires(reqs, extras=('',)):
    from packaging.requirements import Requirement
    for r in map(Requirement, reqs or []):
        if r.marker is None or any(r.marker.evaluate({'extra': e}) for e in extras): yield r

def _closure(reqs) -> dict:
    "Distributions of this environment that `reqs` need, transitively: {name: Distribution}. Fails on a missing one."
    from packaging.utils import canonicalize_name
    found, todo = {}, [(r, set(r.extras)) for r in reqs]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        try: d = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f'{req} is not installed in {sys.prefix}: run `make setup`', pytrace=False)
        if not req.specifier.contains(d.version, prereleases=True):
            pytest.fail(f'{req} is not met by the installed {d.version}: run `make setup`', pytrace=False)
        if name in found and extras <= found[name][1]: continue
        extras |= found.get(name, (d, set()))[1]
        found[name] = (d, extras)
        todo += [(r, set(r.extras)) for r in _requires(d.requires, ('', *extras))]
    return {n: d for n, (d, _) in found.items()}

def _link_dists(dists:dict, farm:Path):
    "A folder of links to the installed files (top-level packages, modules, .dist-info) of `dists`."
    farm.mkdir()
    for d in dists.values():
        site = Path(d.locate_file(''))
        for top in {Path(f).parts[0] for f in d.files or [] if not str(f).startswith('..')}:
            if top.endswith('.pth') or top == '__pycache__' or (farm/top).exists(): continue
            if (site/top).exists(): (farm/top).symlink_to(site/top)

@pytest.fixture(scope='session')
def venv(dists, tmp_path_factory):
    "A fresh venv with the wheel installed (dependencies linked from this environment); its bin folder."
    _, wheel, *_ = dists
    tmp = tmp_path_factory.mktemp('venv')
    v = tmp/'venv'
    t = time.time()
    _ok(_run(sys.executable, '-m', 'venv', '--without-pip', v))   # pip: this environment's, through --python
    py = v/'bin'/'python'
    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        reqs = email.message_from_string(z.read(info).decode()).get_all('Requires-Dist')
    _link_dists(_closure(list(_requires(reqs))), tmp/'deps')
    site = _ok(_run(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])')).stdout.strip()
    (Path(site)/'_sb_test_deps.pth').write_text(f'{tmp/"deps"}\n')
    r = _ok(_run(sys.executable, '-m', 'pip', '--python', py, 'install', '--no-index', '--no-cache-dir', wheel,
                 env=_env(), cwd=tmp), 'pip install <wheel>')
    assert 'Uninstalling' not in r.stdout, r.stdout   # pip changed nothing but the new venv
    _ok(_run(sys.executable, '-m', 'pip', '--python', py, 'check', env=_env(), cwd=tmp), 'pip check')
    print(f'venv + install: {time.time()-t:.1f}s')
    return v/'bin'

def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    return {**env, 'OMP_NUM_THREADS': '1', 'PYTHONNOUSERSITE': '1', 'PIP_DISABLE_PIP_VERSION_CHECK': '1', **kw}

def test_installed_wheel_imports_every_module(venv, tmp_path):
    code = textwrap.dedent('''
        import importlib, pkgutil, sys, sharpbalance
        assert sharpbalance.__file__.startswith(sys.prefix), sharpbalance.__file__
        mods = [m.name for m in pkgutil.walk_packages(sharpbalance.__path__, 'sharpbalance.')]
        for m in mods: importlib.import_module(m)
        print(len(mods))''')
    r = _ok(_run(venv/'python', '-c', code, env=_env(), cwd=tmp_path), 'import every module of the installed wheel')
    assert int(r.stdout.split()[-1]) >= 10

@pytest.fixture(scope='session')
def helps(venv, tmp_path_factory):
    "`<script> --help` of every console script, two at a time: {name: CompletedProcess}."
    cwd = tmp_path_factory.mktemp('help')
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = {n: ex.submit(_run, venv/n, '--help', env=_env(), cwd=cwd) for n in SCRIPTS}
        return {n: f.result() for n, f in futs.items()}

@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_console_script_help(name, helps, venv):
    r = helps[name]
    assert (venv/name).exists(), f'{name} is not installed by the wheel'
    _ok(r, f'{name} --help')
    assert 'usage' in r.stdout.lower() and 'Traceback' not in r.stderr, (r.stdout, r.stderr)

def test_installed_wheel_trains_a_tiny_ensemble(venv, tmp_path):
    out = tmp_path/'run'
    t = time.time()
    _ok(_run(venv/'sharpbalance-train', '--data', 'digits', '--seed', '1 2', '--epochs', '1', '--batch_size', '256',
             '--quiet', '--save_path', out, env=_env(), cwd=tmp_path, timeout=300), 'sharpbalance-train')
    print(f'train: {time.time()-t:.1f}s')
    assert out.is_dir() and any(out.iterdir()), f'nothing saved in {out}'

# ---------------------------------------------------------------- workflows and hooks
WORKFLOWS = sorted((ROOT/'.github'/'workflows').glob('*.y*ml'))

def test_workflows_pass_actionlint(tmp_path):
    names = {p.name for p in WORKFLOWS}
    assert {'test.yaml', 'deploy.yaml'} <= names, names
    _ok(_run(BIN/'actionlint', *WORKFLOWS, cwd=ROOT))
    assert 'make test' in (ROOT/'.github'/'workflows'/'test.yaml').read_text()   # the README's test command
    bad = tmp_path/'bad.yaml'   # and actionlint is not vacuous here
    bad.write_text('on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v7\n'
                   '        with:\n          no_such_input: 1\n')
    r = _run(BIN/'actionlint', bad, cwd=tmp_path)
    assert r.returncode == 1 and 'no_such_input' in r.stdout, (r.stdout, r.stderr)

def test_pre_commit_hooks_run_commands_the_venv_has():
    import yaml
    cfg = yaml.safe_load((ROOT/'.pre-commit-config.yaml').read_text())
    hooks = {h['id']: h for repo in cfg['repos'] for h in repo['hooks']}
    assert {'nbdev-clean', 'nbdev-export', 'ruff'} <= set(hooks), sorted(hooks)
    for h in hooks.values():
        exe = h['entry'].split()[0]
        assert exe.startswith('.venv/bin/') and (ROOT/exe).exists(), f'hook {h["id"]}: {exe} does not exist (make setup)'
        if h.get('files'): re.compile(h['files'])

# ---------------------------------------------------------------- Makefile on a machine that lacks things
@pytest.fixture
def mk(tmp_path):
    """Run this Makefile in a scratch folder with a stand-in .venv that is up to date (so no target installs
    anything), an `apt-get` stand-in that records its calls, and an empty Playwright browser folder."""
    shutil.copy(ROOT/'Makefile', tmp_path/'Makefile'); shutil.copy(ROOT/'pyproject.toml', tmp_path/'pyproject.toml')
    stubs = tmp_path/'stubs'; stubs.mkdir()
    (stubs/'apt-get').write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n'); (stubs/'apt-get').chmod(0o755)
    (tmp_path/'pw').mkdir()
    def make(*args, venv=True, **env):
        if venv and not (tmp_path/'.venv').exists():
            (tmp_path/'.venv'/'bin').mkdir(parents=True)
            for exe in ('python', 'pip'): (tmp_path/'.venv'/'bin'/exe).symlink_to('/bin/true')
            (tmp_path/'.venv'/'.installed').touch()
        e = {**os.environ, 'PATH': f'{stubs}:{os.environ["PATH"]}', 'PLAYWRIGHT_BROWSERS_PATH': str(tmp_path/'pw'), **env}
        r = _run('make', '-s', '--no-print-directory', *args, cwd=tmp_path, env=e, timeout=60)
        apt = (tmp_path/'apt.log').read_text() if (tmp_path/'apt.log').exists() else ''
        return r, apt
    make.tmp = tmp_path
    return make

def _one_line(r, *words):
    out = (r.stdout + r.stderr).strip()
    assert len(out.splitlines()) == 1, out
    for w in words: assert w in out, out
    return out

def test_browser_deps_as_a_user_says_what_to_install(mk):
    r, apt = mk('browser-deps', 'AS_ROOT=', 'CHROMIUM=/no/chromium', 'NPM=no-npm')
    assert r.returncode == 0 and not apt, (r, apt)
    _one_line(r, 'playwright install chromium', 'npm')
    r, apt = mk('browser-deps', 'AS_ROOT=', 'CHROMIUM=/bin/sh', 'NPM=sh')   # both present: silent
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip() and not apt
    (mk.tmp/'pw'/'chromium-1').mkdir()   # Playwright's own Chromium counts
    r, apt = mk('browser-deps', 'AS_ROOT=', 'CHROMIUM=/no/chromium', 'NPM=sh')
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip() and not apt

def test_browser_deps_as_root_installs_with_apt(mk):
    r, apt = mk('browser-deps', 'AS_ROOT=0', 'CHROMIUM=/no/chromium', 'NPM=no-npm')
    assert r.returncode == 0 and 'install -y -qq chromium' in apt and 'install -y -qq npm' in apt, (r, apt)

def test_docs_without_quarto_or_npm_says_so(mk):
    r, apt = mk('docs', 'AS_ROOT=', 'CHROMIUM=/bin/sh', 'QUARTO=no-quarto', 'NPM=no-npm')
    assert r.returncode != 0 and not apt
    out = (r.stdout + r.stderr).strip().splitlines()
    assert any('make docs: needs Quarto' in l and 'npm' in l for l in out), out
    assert not any('Traceback' in l or 'build_docs' in l for l in out), out

@pytest.mark.parametrize('target', ['demo', 'lab', 'docs', 'test', 'lint'])
def test_targets_without_a_venv_capable_python_say_so(mk, target):
    fake = mk.tmp/'python3'   # a Python without ensurepip (Debian's python3 without python3-venv)
    fake.write_text(f'#!/bin/sh\ncase "$*" in *"-m venv"*) mkdir -p .venv/bin; echo "ensurepip is not available" >&2; exit 1;; esac\n'
                    f'exec {sys.executable} "$@"\n'); fake.chmod(0o755)
    r, _ = mk(target, f'PYTHON={fake}', 'AS_ROOT=', venv=False)
    assert r.returncode != 0
    out = (r.stdout + r.stderr).strip().splitlines()
    assert 'python3-venv' in out[0] and out[0].startswith('make:'), out
    assert not (mk.tmp/'.venv').exists()
    r, _ = mk(target, 'PYTHON=/no/python3', 'AS_ROOT=', venv=False)
    assert r.returncode != 0 and 'no /no/python3 on PATH' in (r.stdout + r.stderr).splitlines()[0], r

# ---------------------------------------------------------------- the browser fixture's fallback
BROWSER_TEST = 'def test_b(browser):\n    assert browser.version\n'

@pytest.mark.parametrize('case', ['missing', 'missing-ci', 'playwright'])
def test_browser_fixture_falls_back_and_fails_only_in_ci(case, tmp_path):
    (tmp_path/'conftest.py').write_text((ROOT/'tests'/'conftest.py').read_text()); (tmp_path/'test_b.py').write_text(BROWSER_TEST)
    pw = tmp_path/'pw'; pw.mkdir()
    if case == 'playwright':   # a stand-in for `playwright install chromium`: Debian's Chromium where Playwright looks
        if not Path('/usr/bin/chromium').exists(): pytest.skip('needs /usr/bin/chromium to stand in for Playwright\'s own')
        find = ('from playwright.sync_api import sync_playwright\nwith sync_playwright() as p:\n'
                '    try: p.chromium.launch()\n    except Exception as e: print(e)')
        r = _run(sys.executable, '-c', find, env={**_env(), 'PLAYWRIGHT_BROWSERS_PATH': str(pw)}, timeout=60)
        exe = re.search(r"Executable doesn't exist at (\S+)", r.stdout).group(1)
        Path(exe).parent.mkdir(parents=True)
        Path(exe).write_text('#!/bin/sh\nexec /usr/bin/chromium --headless "$@"\n'); Path(exe).chmod(0o755)
    env = {**_env(), 'SB_CHROMIUM': '/no/chromium', 'PLAYWRIGHT_BROWSERS_PATH': str(pw), 'CI': 'true' if case == 'missing-ci' else ''}
    r = _run(sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', tmp_path, env=env, cwd=tmp_path, timeout=120)
    want = {'missing': '1 skipped', 'missing-ci': '1 error', 'playwright': '1 passed'}[case]
    assert want in r.stdout, r.stdout[-2000:]
    if case.startswith('missing'): assert 'playwright install chromium' in r.stdout, r.stdout[-2000:]
