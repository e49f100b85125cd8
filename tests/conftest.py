"Shared fixtures: headless Chromium from Debian's package (never `playwright install`)."
import os
from pathlib import Path
import pytest

CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic']

@pytest.fixture(scope='session')
def browser():
    "Headless Chromium for the browser tests; missing is a skip locally and a failure in CI."
    if not Path(CHROMIUM).exists():
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(f'{CHROMIUM} is missing in CI: install it with `apt-get install -y chromium`.', pytrace=False)
        pytest.skip(f'{CHROMIUM} is missing: install it (`apt-get install -y chromium`) to run the browser tests.')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()
