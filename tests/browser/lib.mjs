// The browser test harness that scripts in this directory import: headless Debian Chromium
// driven by Playwright, browser contexts that present a client certificate, screenshots, axe
// accessibility checks and QR codes read back from screenshots.
//
// Scripts are run by `run_script` in tests/src/browser.rs, which installs Chromium and these
// packages first; a script prints one JSON line of results at the end (see `withBrowser`).
//
// Who checks the server's certificate:
// - In a context with a client certificate, Playwright routes the browser through its own
//   proxy, which makes the TLS connection to that origin with Node's `tls` and presents the
//   certificate. Node checks the server (chain and name) against its trust store plus the PEM
//   file in NODE_EXTRA_CA_CERTS, which Node reads only at start: give the node's CA there.
//   If that check fails, the page is the proxy's own (status 503, its text says why;
//   `gotoOk` shows it). The browser sees the proxy's own certificate and is told to accept
//   it, so in such a context the browser checks no certificate, of any origin: only the
//   client-certificate origin is checked, by the proxy.
// - In a context without one, Chromium checks the server itself. It has no switch to trust a
//   CA; `launch({ pinnedCertificates })` makes it accept chains that contain one of the keys
//   of the given certificates (`--ignore-certificate-errors-spki-list`), which skips all other
//   checks of those chains, in every context of that browser. Pin the server's certificate,
//   or its CA if the server sends it in its chain.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import axeCore from 'axe-core';
import jsQR from 'jsqr';
import { chromium } from 'playwright-core';
import pngjs from 'pngjs';

/** Debian's Chromium (tests/src/browser.rs installs it). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Switches for Chromium on a machine without a network. Without the background-networking
 * ones it tries the closed network many times at each start. Playwright gives every launch a
 * fresh temporary profile (--user-data-dir) and removes it at close.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts Chromium.
 *
 * @param {object} [options]
 * @param {string[]} [options.pinnedCertificates] PEM files whose certificates' keys Chromium
 *   accepts in a server's chain without other checks (for contexts without a client
 *   certificate; see the top of this file).
 * @param {string[]} [options.args] more Chromium switches.
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launch({ pinnedCertificates = [], args = [] } = {}) {
  const pins = pinnedCertificates.flatMap((file) => spkiHashes(fs.readFileSync(file, 'utf8')));
  const pinArgs = pins.length ? [`--ignore-certificate-errors-spki-list=${pins.join(',')}`] : [];
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...pinArgs, ...args],
  });
}

/** base64(SHA-256(SubjectPublicKeyInfo)) of every certificate in `pem`, as Chromium wants. */
function spkiHashes(pem) {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  assert.ok(blocks.length > 0, 'a pinned certificate file holds no certificate');
  return blocks.map((block) => {
    const spki = new crypto.X509Certificate(block).publicKey.export({ type: 'spki', format: 'der' });
    return crypto.createHash('sha256').update(spki).digest('base64');
  });
}

/**
 * A new browser context (its own cookies, cache and TLS sessions).
 *
 * With `origin`, the context presents a client certificate to that origin (scheme, host and
 * port, e.g. `https://127.0.0.1:8443`), from a PKCS#12 file (`pfxPath`, `passphrase`) or from
 * PEM files (`certPath`, `keyPath`, and `passphrase` if the key is encrypted).
 *
 * @param {import('playwright-core').Browser} browser
 * @param {object} [options]
 * @param {string} [options.origin] where to present the certificate.
 * @param {string} [options.pfxPath] PKCS#12 file with certificate and key.
 * @param {string} [options.certPath] PEM certificate (chain), with `keyPath`.
 * @param {string} [options.keyPath] PEM private key, with `certPath`.
 * @param {string} [options.passphrase] of the PKCS#12 file or the PEM key.
 * @param {boolean} [options.bypassCSP] let scripts be injected despite the page's
 *   Content-Security-Policy (`axe` does not need it).
 * @param {boolean} [options.ignoreHTTPSErrors] accept any server certificate, also at `origin`.
 * Any other option is passed to Playwright's `browser.newContext`.
 * @returns {Promise<import('playwright-core').BrowserContext>}
 */
export async function newContext(browser, options = {}) {
  const { origin, pfxPath, certPath, keyPath, passphrase, ...rest } = options;
  const context = { ...rest };
  if (origin !== undefined) {
    if (pfxPath !== undefined) {
      assert.ok(certPath === undefined && keyPath === undefined, 'give pfxPath or certPath+keyPath, not both');
      context.clientCertificates = [{ origin, pfxPath, passphrase }];
    } else {
      assert.ok(certPath !== undefined && keyPath !== undefined, 'a client certificate needs pfxPath, or certPath and keyPath');
      context.clientCertificates = [{ origin, certPath, keyPath, passphrase }];
    }
  } else {
    assert.ok(pfxPath === undefined && certPath === undefined, 'a client certificate needs its origin');
  }
  return browser.newContext(context);
}

/**
 * A full-page PNG screenshot `NAME.png` in the directory SCHEIN_SCREENSHOTS names.
 * @returns {Promise<string>} the file's path.
 */
export async function shot(page, name) {
  const dir = process.env.SCHEIN_SCREENSHOTS;
  assert.ok(dir, 'SCHEIN_SCREENSHOTS names no directory for screenshots');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Runs axe-core on the page and returns its violations (`id`, `impact`, `help`, and the
 * `targets` of the offending elements).
 *
 * axe is evaluated through the DevTools protocol, which the page's Content-Security-Policy
 * does not govern, so it works on pages without inline script and without `bypassCSP`.
 *
 * @param {object} [options] axe's run options (e.g. `{ runOnly: ['wcag2a', 'wcag2aa'] }`).
 */
export async function axe(page, options = {}) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await page.evaluate(axeCore.source);
  const results = await page.evaluate((opts) => window.axe.run(document, opts), {
    resultTypes: ['violations'],
    ...options,
  });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((n) => n.target.join(' ')),
  }));
}

/** The text of the QR code in a PNG file, or null if none is found. */
export function decodeQr(pngPath) {
  const png = pngjs.PNG.sync.read(fs.readFileSync(pngPath));
  const code = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
  return code ? code.data : null;
}

/**
 * Runs a script's body: launches Chromium (with `launchOptions`), calls `body(browser)`,
 * closes the browser whatever happens, prints what `body` returned as one JSON line, the last
 * line of the output, for `run_script`, and ends the process. A failure prints its stack and
 * exits non-zero.
 */
export async function withBrowser(body, launchOptions = {}) {
  let browser;
  try {
    browser = await launch(launchOptions);
    const results = await body(browser);
    await browser.close();
    browser = undefined;
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } catch (error) {
    console.error(error?.stack ?? String(error));
    process.exitCode = 1;
  } finally {
    await browser?.close().catch(() => {});
  }
  // End now: Playwright's client-certificate proxy can leave a connection to the server open
  // (one the browser opened ahead and never used), which would keep Node running until the
  // server drops it. Exit once the results are written out.
  process.stdout.write('', () => process.exit());
}

/**
 * A navigation that must succeed: returns the response, or fails with its status and the
 * page's text (where Playwright's proxy explains why it refused the server).
 */
export async function gotoOk(page, url) {
  const response = await page.goto(url);
  if (!response?.ok()) {
    const text = (await page.locator('body').textContent().catch(() => ''))?.trim();
    assert.fail(`${url} answered ${response?.status()}: ${text}`);
  }
  return response;
}

/** A navigation that must fail: returns its error's first line (e.g. `net::ERR_…`). */
export async function gotoFails(page, url) {
  try {
    const response = await page.goto(url);
    assert.fail(`${url} loaded (status ${response?.status()}) but was expected to fail`);
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    return String(error.message).split('\n')[0].replace(/^page\.goto: /, '');
  }
}
