// Proof that the harness works, run by tests/tests/browser_harness.rs against its HTTPS server
// that demands a client certificate: the page opens with the certificate and names it, its QR
// code reads back from a screenshot, axe finds nothing; without the certificate the page does
// not open, and at a name the server's certificate does not carry the proxy refuses it.
//
// Environment: SCHEIN_ORIGIN (https://127.0.0.1:PORT), SCHEIN_CLIENT_CERT and
// SCHEIN_CLIENT_KEY (PEM), SCHEIN_EXPECT_NAME (the certificate's common name),
// SCHEIN_SERVER_CERT (PEM, pinned for the context without a certificate), NODE_EXTRA_CA_CERTS
// (the test CA) and SCHEIN_SCREENSHOTS.

import assert from 'node:assert/strict';

import { axe, decodeQr, gotoFails, gotoOk, newContext, shot, withBrowser } from './lib.mjs';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const origin = env('SCHEIN_ORIGIN');
const certPath = env('SCHEIN_CLIENT_CERT');
const keyPath = env('SCHEIN_CLIENT_KEY');
const expectName = env('SCHEIN_EXPECT_NAME');

await withBrowser(
  async (browser) => {
    const started = Date.now();
    const signedIn = await newContext(browser, { origin, certPath, keyPath });
    const page = await signedIn.newPage();
    await gotoOk(page, `${origin}/`);
    const subject = (await page.locator('#subject').textContent())?.trim();
    assert.ok(subject?.includes(expectName), `the page names ${subject}, not ${expectName}`);
    await page.locator('img#qr').evaluate((img) => img.decode());
    const screenshot = await shot(page, 'signed-in');
    const qr = decodeQr(screenshot);
    const violations = await axe(page);
    await signedIn.close();

    // No certificate: the browser itself connects, trusting the pinned server certificate,
    // so that what stops it is the missing client certificate and not the server's name.
    const anonymous = await newContext(browser);
    const withoutCertificate = await gotoFails(await anonymous.newPage(), `${origin}/`);
    await anonymous.close();

    // The certificate offered at `localhost`, which the server's certificate does not name:
    // Playwright's proxy checks the server and answers with its own error page.
    const port = new URL(origin).port;
    const wrongName = `https://localhost:${port}`;
    const misdirected = await newContext(browser, { origin: wrongName, certPath, keyPath });
    const misPage = await misdirected.newPage();
    const misResponse = await misPage.goto(`${wrongName}/`);
    const wrongNameText = (await misPage.locator('body').textContent())?.trim();
    await misdirected.close();

    return {
      subject,
      qr,
      violations: violations.length,
      violation_ids: violations.map((v) => v.id),
      without_certificate: withoutCertificate,
      wrong_name_status: misResponse?.status(),
      wrong_name: wrongNameText,
      browser: browser.version(),
      millis: Date.now() - started,
    };
  },
  { pinnedCertificates: [env('SCHEIN_SERVER_CERT')] },
);
