"""Shared fixtures: headless Chromium, Debian's package (/usr/bin/chromium) when present, else Playwright's own
(`playwright install chromium`, for a laptop without root)."""
import os
from pathlib import Path
import pytest

CHROMIUM = os.environ.get('SB_CHROMIUM', '/usr/bin/chromium')   # SB_CHROMIUM: another path (tests of this fixture)
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic']
HOWTO = (f'install Chromium to run them: `.venv/bin/playwright install chromium` (any user), '
         f'or as root `apt-get install -y chromium` ({CHROMIUM})')

def launch_chromium(p):
    "Launch headless Chromium with Playwright `p`: Debian's when present, else Playwright's own; None when neither is."
    if Path(CHROMIUM).exists(): return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try: return p.chromium.launch(args=ARGS)
    except Exception as e:   # playwright's Error when its browser was never installed
        if "Executable doesn't exist" in str(e) or 'playwright install' in str(e): return None
        raise

@pytest.fixture(scope='session')
def browser():
    "Headless Chromium for the browser tests; missing is a skip locally and a failure in CI."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch_chromium(p)
        if b is None:
            if os.environ.get('CI', '').lower() == 'true':
                pytest.fail(f'No Chromium in CI: {HOWTO}.', pytrace=False)
            pytest.skip(f'No Chromium: {HOWTO}.')
        yield b
        b.close()
