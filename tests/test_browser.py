"""Real-browser test of the explorers: start JupyterLab on 127.0.0.1 in its own process group, open a copy of
nbs/60_widgets.ipynb in headless Chromium (Debian's, never `playwright install`), run all cells, move the rho and
flat_ratio sliders of `explore_training` and the rho slider of `explore_theory`, and check that the text and the
plot image change as they should. The server is stopped by its process group."""
import json, os, signal, subprocess, time, urllib.request
from pathlib import Path
import pytest
from helpers import ROOT, BIN, env1, free_port

NB = ROOT/'nbs'/'60_widgets.ipynb'
RUN_ALL_TIMEOUT = 240_000  # ms: the notebook's own lessons run first (about 35 s on 2 busy cores)
CHANGE_TIMEOUT = 90_000    # ms: one slider move retrains at most two small ensembles (a few seconds)

def _slow(c) -> bool: return any(l.strip() in ('#| slow', '#|slow') for l in ''.join(c['source']).splitlines())

def _clean_copy(src:Path, dst:Path):
    """The notebook without outputs, so nothing saved can pass for a live widget, and without its `slow` cells (as
    nbdev-test runs it: the grid is read from the committed CSV, copied beside it, so the explorer's cache starts empty)."""
    nb = json.loads(src.read_text())
    nb['cells'] = [c for c in nb['cells'] if not (c['cell_type'] == 'code' and _slow(c))]
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    (dst.parent/'data').mkdir(exist_ok=True)
    for f in (src.parent/'data').glob('*.csv'): (dst.parent/'data'/f.name).write_bytes(f.read_bytes())
    meta = nb.setdefault('metadata', {}); meta.pop('widgets', None)
    # the repo's notebooks carry no kernelspec (nbdev-clean); without one JupyterLab asks which kernel to start
    meta['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
    dst.write_text(json.dumps(nb))

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "Base URL of a JupyterLab server (no token) whose root is a temporary folder holding a clean copy of the notebook."
    tmp = tmp_path_factory.mktemp('lab'); work = tmp/'work'; work.mkdir()
    _clean_copy(NB, work/NB.name)
    notif = work/'.settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    notif.parent.mkdir(parents=True); notif.write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    # render every cell (no windowing), so the widgets stay in the DOM wherever the notebook is scrolled
    tracker = work/'.settings'/'@jupyterlab'/'notebook-extension'/'tracker.jupyterlab-settings'
    tracker.parent.mkdir(parents=True); tracker.write_text(json.dumps({'windowingMode': 'none'}))
    env = env1(JUPYTER_CONFIG_DIR=str(tmp/'config'), JUPYTER_RUNTIME_DIR=str(tmp/'runtime'),
               IPYTHONDIR=str(tmp/'ipython'), PYTHONUNBUFFERED='1')
    port = free_port()
    cmd = [str(BIN/'jupyter'), 'lab', '--no-browser', '--allow-root', '--ip=127.0.0.1',
           f'--port={port}', '--ServerApp.port_retries=0', '--IdentityProvider.token=', f'--ServerApp.root_dir={work}',
           f'--LabApp.workspaces_dir={work}/.ws', f'--LabApp.user_settings_dir={work}/.settings',
           '--LabApp.news_url=None', '--LabApp.expose_app_in_browser=True']
    log = open(tmp/'server.log', 'wb')  # outside root_dir, so it never shows in the file browser
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited with {proc.returncode}:\n{(tmp/"server.log").read_text()[-3000:]}')
            try:
                if urllib.request.urlopen(f'{url}/api/status', timeout=2).status == 200: break
            except OSError: pass
            if time.time() - t0 > 60: pytest.fail(f'jupyter lab did not answer in 60 s:\n{(tmp/"server.log").read_text()[-3000:]}')
            time.sleep(0.25)
        yield url
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)
        log.close()

@pytest.fixture
def shots(tmp_path):
    "Folder for screenshots: $SB_BROWSER_SHOTS when set (to look at them), else a temporary one."
    d = Path(os.environ['SB_BROWSER_SHOTS']) if os.environ.get('SB_BROWSER_SHOTS') else tmp_path/'shots'
    d.mkdir(parents=True, exist_ok=True); return d

# --- page helpers --------------------------------------------------------------------------------------------------
# read from the notebook model (not the DOM): the first error output of any cell, and how many code cells have run
_ERROR_JS = """() => { const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!nb || !nb.content || !nb.content.model) return null;
  for (const c of nb.content.model.sharedModel.cells) { if (c.cell_type !== 'code') continue;
    for (const o of c.outputs) if (o.output_type === 'error') return o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'); }
  return null; }"""
_RUN_JS = """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells.filter(c => c.cell_type === 'code');
  return cells.length > 0 && cells.every(c => c.execution_count); }"""

def _wait(page, js:str, arg=None, timeout:int=CHANGE_TIMEOUT, what:str=''):
    "Wait until `js(arg)` is truthy; fail at once with the traceback if a cell raised."
    t0 = time.time()
    while True:
        if page.evaluate(js, arg): return
        err = page.evaluate(_ERROR_JS)
        if err: pytest.fail(f'a notebook cell failed while waiting for {what}:\n{err[-3000:]}', pytrace=False)
        if (time.time() - t0) * 1000 > timeout:
            seen = page.evaluate(_TEXT_JS, arg[0]) if isinstance(arg, list) else ''
            pytest.fail(f'timed out after {timeout / 1000:.0f} s waiting for {what}; {arg[0] if seen else "it"} reads: {seen!r}', pytrace=False)
        page.wait_for_timeout(200)

_TEXT_JS = "(sel) => { const e = document.querySelector(sel); return e ? e.innerText : ''; }"
_SRC_JS = "(sel) => { const i = document.querySelector(sel + ' img') || document.querySelector('img' + sel); return i ? i.src : ''; }"
_IMG_READY_JS = """(a) => { const i = document.querySelector(a[0] + ' img') || document.querySelector('img' + a[0]);
  return !!i && i.complete && i.naturalWidth > 0 && i.src !== a[1]; }"""
_HAS_ALL_JS = "(a) => { const e = document.querySelector(a[0]); return !!e && a[1].every(t => e.innerText.includes(t)); }"

def _state(page, prefix:str, text_sel:str) -> tuple:
    return page.evaluate(_TEXT_JS, text_sel), page.evaluate(_SRC_JS, prefix)

def _after_change(page, img_sel:str, text_sel:str, expect:list, before:tuple, what:str) -> tuple:
    "Wait for the final text, then for a new, painted plot image; return the new (text, src)."
    _wait(page, _HAS_ALL_JS, [text_sel, expect], what=f'{what}: {expect}')
    _wait(page, _IMG_READY_JS, [img_sel, before[1]], what=f'{what}: a redrawn plot')
    return page.evaluate(_TEXT_JS, text_sel), page.evaluate(_SRC_JS, img_sel)

# --- the test ------------------------------------------------------------------------------------------------------
def test_widgets_notebook_in_jupyterlab(lab, browser, shots):
    t_start = time.time(); times = {}
    ctx = browser.new_context(viewport={'width': 1280, 'height': 1100})
    page = ctx.new_page()
    try:
        page.goto(f'{lab}/lab/tree/{NB.name}')
        page.wait_for_selector('.jp-NotebookPanel .jp-Notebook .jp-Cell', timeout=60_000)
        # the execution indicator reads "idle" before a kernel exists: also wait for a kernel name
        page.wait_for_function("""() => { const k = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
            const i = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
            return k && !k.innerText.includes('No Kernel') && i && i.dataset.status === 'idle'; }""", timeout=60_000)
        page.wait_for_function('window.jupyterapp !== undefined', timeout=30_000)
        times['open'] = time.time() - t_start; t0 = time.time()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

        # Run All is done when every code cell has an execution count and the kernel is idle again
        _wait(page, _RUN_JS, timeout=RUN_ALL_TIMEOUT, what='every cell to run')
        _wait(page, "() => document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator').dataset.status === 'idle'",
              timeout=RUN_ALL_TIMEOUT, what='the kernel to finish Run All')
        _wait(page, _HAS_ALL_JS, ['.sb-theory-text', ['rho = 0.10', 'SharpBalance']], timeout=20_000,
              what='the theory explorer after Run All')
        # the training explorer is live: its status reads "ready" and its plot is painted
        _wait(page, _HAS_ALL_JS, ['.sb-train-status', ['rho = 0.10', 'flat_ratio = 0.50', 'ready']], timeout=20_000,
              what='the training explorer after Run All')
        _wait(page, _IMG_READY_JS, ['.sb-train-plot', ''], timeout=20_000, what='the training plot')
        times['run_all'] = time.time() - t0
        train = page.locator('.sb-train'); train.scroll_into_view_if_needed()
        train.screenshot(path=str(shots/'1_train_initial.png'))
        table0 = page.evaluate(_TEXT_JS, '.sb-train-table')
        before = _state(page, '.sb-train-plot', '.sb-train-status')
        assert 'SharpBalance' in table0 and 'DER' in table0

        # rho: type 0.2 into the slider's readout -> SAM and SharpBalance retrain at rho = 0.20
        t0 = time.time()
        readout = page.locator('.sb-train-rho .widget-readout')
        readout.click(); page.keyboard.press('Control+A'); page.keyboard.type('0.2'); page.keyboard.press('Enter')
        _wait(page, _HAS_ALL_JS, ['.sb-train-status', ['rho = 0.20', 'training']], timeout=20_000, what='the training indicator')
        assert page.locator('.sb-train-progress').is_visible()
        after = _after_change(page, '.sb-train-plot', '.sb-train-status', ['rho = 0.20', 'flat_ratio = 0.50', 'ready', '(2 ensembles trained)'],
                              before, 'rho = 0.20')
        times['rho_change'] = time.time() - t0
        table1 = page.evaluate(_TEXT_JS, '.sb-train-table')
        assert after[1] != before[1], 'the plot image did not change after moving rho'
        assert table1 != table0, 'the accuracy table did not change after moving rho'
        assert not page.locator('.sb-train-progress').is_visible()
        train.screenshot(path=str(shots/'2_train_rho_020.png'))

        # flat_ratio: one ArrowLeft on the slider handle -> 0.40, only SharpBalance retrains
        t0 = time.time(); before = after
        page.locator('.sb-train-flat-ratio .noUi-handle').focus(); page.keyboard.press('ArrowLeft')
        after = _after_change(page, '.sb-train-plot', '.sb-train-status', ['rho = 0.20', 'flat_ratio = 0.40', 'ready', '(1 ensemble trained)'],
                              before, 'flat_ratio = 0.40')
        times['flat_ratio_change'] = time.time() - t0
        table2 = page.evaluate(_TEXT_JS, '.sb-train-table')
        assert after[1] != before[1], 'the plot image did not change after moving flat_ratio'
        assert table2 != table1, 'the accuracy table did not change after moving flat_ratio'
        # DE and SAM rows stay, the SharpBalance row moves
        rows1, rows2 = table1.splitlines(), table2.splitlines()
        assert [r for r in rows1 if r.startswith(('DE', 'SAM'))] == [r for r in rows2 if r.startswith(('DE', 'SAM'))]
        train.screenshot(path=str(shots/'3_train_flat_040.png'))

        # theory: ArrowRight on its rho handle -> 0.11, redrawn at once
        t0 = time.time()
        theory = page.locator('.sb-theory'); theory.scroll_into_view_if_needed()
        before = _state(page, '.sb-theory-plot', '.sb-theory-text')
        page.locator('.sb-theory-rho .noUi-handle').focus(); page.keyboard.press('ArrowRight')
        _after_change(page, '.sb-theory-plot', '.sb-theory-text', ['rho = 0.11', 'SAM: sharpness'], before, 'theory rho = 0.11')
        times['theory_change'] = time.time() - t0
        theory.screenshot(path=str(shots/'4_theory_rho_011.png'))
        page.screenshot(path=str(shots/'5_page.png'), full_page=False)
    except BaseException:
        page.screenshot(path=str(shots/'failure.png')); raise
    finally:
        ctx.close()
    times['total_in_test'] = time.time() - t_start
    print('browser test timings (s): ' + ', '.join(f'{k} {v:.1f}' for k, v in times.items()))
