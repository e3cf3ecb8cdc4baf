// The web console in headless Chromium against real nodes (tests/tests/console.rs starts them),
// signed in with the .p12 files `schein-node enroll` wrote. One phase per run:
//
// - SCHEIN_PHASE=main: no certificate → the help page; Leipzig's office issues a voucher and its
//   card (QR code read back from a screenshot, one printed page); a forged cross-site form is
//   refused and changes nothing; a Dresden practice checks the voucher (valid, mistyped with the
//   live check, wrong role → "not for you"), bills it (preview, receipt, own list); the office
//   revokes it from the list and the practice sees it revoked; the funder's dashboard shows its
//   chart and its CSV downloads. axe runs on every page.
// - SCHEIN_PHASE=issuer-down: Leipzig is stopped; the practice checks the short code again, and
//   the funder's federation view at Dresden names Leipzig as not reachable.
//
// Environment: SCHEIN_LEIPZIG and SCHEIN_DRESDEN (console origins), SCHEIN_OFFICE_P12,
// SCHEIN_PRACTICE_P12, SCHEIN_FUNDER_P12, SCHEIN_SECOND_P12 (a second office identity) and their
// SCHEIN_*_PASSWORD, SCHEIN_FUNDER_CERT and
// SCHEIN_FUNDER_KEY (PEM), SCHEIN_SHORT_CODE (phase
// issuer-down), NODE_EXTRA_CA_CERTS (both nodes' CAs), SCHEIN_SCREENSHOTS.

import assert from 'node:assert/strict';
import fs from 'node:fs';

import { axe, decodeQr, newContext, shot, withBrowser } from './lib.mjs';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const leipzig = env('SCHEIN_LEIPZIG');
const dresden = env('SCHEIN_DRESDEN');
const phase = env('SCHEIN_PHASE');

/** A signed-in browser context for `origin` with a .p12 file. */
async function signedIn(browser, origin, who) {
  return newContext(browser, {
    origin,
    pfxPath: env(`SCHEIN_${who}_P12`),
    passphrase: env(`SCHEIN_${who}_PASSWORD`),
    acceptDownloads: true,
    // A German Windows PC's browser: dates in the form fields as 30.11.2026.
    locale: 'de-DE',
  });
}

const violations = {};
/** Screenshot and axe for a page the receptionist would look at. */
async function record(page, name) {
  await shot(page, name);
  const found = await axe(page, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] });
  violations[name] = found.map((v) => `${v.id}: ${v.help} (${v.targets.join('; ')})`);
}

/** Types `code` into the practice's field and sends it with Enter, as a hand scanner does. */
async function checkCode(page, origin, code) {
  await page.goto(`${origin}/practice`);
  await page.fill('#code', code);
  await Promise.all([page.waitForLoadState(), page.press('#code', 'Enter')]);
  await page.waitForSelector('.answer .big');
}

const text = async (page, selector) => ((await page.locator(selector).first().textContent()) ?? '').trim();

async function main(browser) {
  const results = {};

  // A visitor without a certificate gets the help page, never a bare TLS error.
  const anonymous = await newContext(browser, { ignoreHTTPSErrors: true });
  const helpPage = await anonymous.newPage();
  const help = await helpPage.goto(`${leipzig}/`);
  results.help_status = help.status();
  results.help_heading = await text(helpPage, 'h1');
  await record(helpPage, 'help');
  await anonymous.close();

  // Leipzig's office issues a voucher and looks at its card.
  const office = await signedIn(browser, leipzig, 'OFFICE');
  const officePage = await office.newPage();
  await officePage.goto(`${leipzig}/office`);
  await record(officePage, 'office-issue');
  await officePage.fill('#cap', '600');
  await officePage.check('input[name="scope_medication"]');
  await Promise.all([officePage.waitForLoadState(), officePage.click('form.issue button[type="submit"]')]);
  await officePage.waitForURL(/\/office\/voucher\?h=/, { timeout: 5000 }).catch(async () => {
    assert.fail(`issuing did not lead to the card: ${officePage.url()}: ${await text(officePage, 'main')}`);
  });
  results.issued_url = officePage.url();
  results.short_code = (await text(officePage, '.voucher-card p.vc-code')).replace(/\s+/g, '-');
  await record(officePage, 'office-card');
  const cardShot = `${process.env.SCHEIN_SCREENSHOTS}/card-only.png`;
  await officePage.locator('.voucher-card').screenshot({ path: cardShot });
  results.qr = decodeQr(cardShot);
  await officePage.emulateMedia({ media: 'print' });
  const pdf = await officePage.pdf({ preferCSSPageSize: true, printBackground: true });
  await officePage.emulateMedia({ media: 'screen' });
  results.card_pages = (pdf.toString('latin1').match(/\/Type\s*\/Page[^s]/g) ?? []).length;
  fs.writeFileSync(`${process.env.SCHEIN_SCREENSHOTS}/card.pdf`, pdf);

  // The list before a forged request.
  await officePage.goto(`${leipzig}/office/vouchers`);
  const listedBefore = await officePage.locator('table.list tbody tr').count();
  await record(officePage, 'office-vouchers');
  const token = await officePage.goto(`${leipzig}/office`).then(() => officePage.locator('input[name="csrf"]').first().inputValue());

  // Another site's page makes the browser post to the console (the browser sends the client
  // certificate along). Even with the right token it is refused, and nothing is issued.
  const forgedPage = await office.newPage();
  await forgedPage.setContent(
    `<form method="post" action="${leipzig}/office/issue"><input name="csrf" value="${token}"><input name="cap" value="900"><button>go</button></form>`,
  );
  const [forged] = await Promise.all([forgedPage.waitForNavigation(), forgedPage.click('button')]);
  results.forged_status = (await forged?.status()) ?? 0;
  results.forged_text = await text(forgedPage, 'main');
  await forgedPage.close();
  await officePage.goto(`${leipzig}/office/vouchers`);
  results.listed_before = listedBefore;
  results.listed_after = await officePage.locator('table.list tbody tr').count();

  // A Dresden practice checks the voucher, typing it (the live check reacts), then bills it.
  const practice = await signedIn(browser, dresden, 'PRACTICE');
  const practicePage = await practice.newPage();
  await practicePage.goto(`${dresden}/practice`);
  await record(practicePage, 'practice-check');
  const code = results.short_code;
  const last = code.slice(-1);
  const mistyped = code.slice(0, -1) + (last === '7' ? '8' : '7');
  await practicePage.fill('#code', mistyped);
  await practicePage.waitForFunction(() => document.querySelector('#code-live')?.textContent?.length > 0);
  results.live_mistyped = await text(practicePage, '#code-live');
  await Promise.all([practicePage.waitForLoadState(), practicePage.press('#code', 'Enter')]);
  await practicePage.waitForSelector('.answer .big');
  results.mistyped_verdict = await text(practicePage, '.answer .big');
  results.mistyped_reason = await text(practicePage, '.answer .reason');
  await record(practicePage, 'practice-mistyped');

  await checkCode(practicePage, dresden, code);
  results.valid_verdict = await text(practicePage, '.answer .big');
  results.valid_facts = await text(practicePage, 'dl.facts');
  await record(practicePage, 'practice-valid');

  await practicePage.fill('input[name="fee_1"]', 'GOAE-1');
  await practicePage.fill('input[name="count_1"]', '2');
  await Promise.all([practicePage.waitForURL(/\/practice\/bill/), practicePage.click('button[value="preview"]')]);
  results.preview_total = await text(practicePage, 'tfoot td');
  await record(practicePage, 'practice-preview');
  await Promise.all([practicePage.waitForLoadState(), practicePage.click('button[value="send"]')]);
  await practicePage.waitForSelector('.receipt');
  results.claim_state = await text(practicePage, '.answer .big');
  results.receipt = await text(practicePage, '.receipt dl');
  await record(practicePage, 'practice-receipt');
  await practicePage.goto(`${dresden}/practice/claims?state=settled`);
  results.claims_list = await text(practicePage, 'table.list tbody');
  await record(practicePage, 'practice-claims');

  // The practice's certificate at a page for offices: "not for you".
  await practicePage.goto(`${dresden}/office`);
  results.wrong_role = await text(practicePage, '.answer .big');
  await record(practicePage, 'not-for-you');

  // A cap above the threshold waits for a second person, who finds it on the caps page.
  await officePage.goto(`${leipzig}/office/vouchers`);
  await officePage.fill('#q', code);
  await Promise.all([officePage.waitForURL(/\/office\/voucher\?h=/), officePage.press('#q', 'Enter')]);
  await officePage.fill('#new_cap', '1200');
  await Promise.all([officePage.waitForLoadState(), officePage.click('form[action="/office/approve"] button')]);
  await officePage.waitForSelector('.answer');
  results.cap_first = await text(officePage, '.answer');
  await officePage.goto(`${leipzig}/office/caps`);
  results.caps_listed = await text(officePage, 'main');
  await record(officePage, 'office-caps');
  const second = await signedIn(browser, leipzig, 'SECOND');
  const secondPage = await second.newPage();
  await secondPage.goto(`${leipzig}/office/caps`);
  await Promise.all([secondPage.waitForURL(/\/office\/voucher\?h=/), secondPage.click('table.list button.link')]);
  await secondPage.fill('#new_cap', '1200');
  await Promise.all([secondPage.waitForLoadState(), secondPage.click('form[action="/office/approve"] button')]);
  await secondPage.waitForSelector('.answer');
  results.cap_second = await text(secondPage, '.answer');
  await second.close();

  // The office finds the voucher in its list and revokes it; the practice sees it revoked.
  await officePage.goto(`${leipzig}/office/vouchers`);
  await officePage.fill('#q', code);
  await Promise.all([officePage.waitForURL(/\/office\/voucher\?h=/), officePage.press('#q', 'Enter')]);
  results.voucher_url = officePage.url();
  await officePage.selectOption('#reason', 'lost');
  await Promise.all([officePage.waitForLoadState(), officePage.click('button.danger')]);
  await officePage.waitForSelector('dl.facts');
  results.revoked_state = await text(officePage, 'section.no-print dl.facts dd');
  await record(officePage, 'office-revoked');
  await checkCode(practicePage, dresden, code);
  results.revoked_verdict = await text(practicePage, '.answer .big');
  results.revoked_reason = await text(practicePage, '.answer .reason');
  await record(practicePage, 'practice-revoked');

  // Held claims and clearing, as the office sees them.
  await officePage.goto(`${leipzig}/office/held`);
  await record(officePage, 'office-held');
  await officePage.goto(`${leipzig}/office/clearing`);
  await record(officePage, 'office-clearing');
  await officePage.goto(`${leipzig}/funder?period=${new Date().getFullYear()}`);
  results.office_report = await text(officePage, 'h1');
  await record(officePage, 'office-report');
  await officePage.goto(`${leipzig}/office/status`);
  await Promise.all([officePage.waitForLoadState(), officePage.click('form[action="/office/status"] button')]);
  await officePage.waitForSelector('.badge');
  results.status_text = await text(officePage, 'main');
  await record(officePage, 'office-status');

  // The funder's dashboard: the chart, and the CSV.
  const funder = await signedIn(browser, leipzig, 'FUNDER');
  const funderPage = await funder.newPage();
  const year = new Date().getFullYear();
  await funderPage.goto(`${leipzig}/funder?period=${year}`);
  results.chart_bars = await funderPage.locator('figure.chart svg rect').count();
  results.chart_text = await text(funderPage, 'figure.chart svg');
  await record(funderPage, 'funder');
  const [download] = await Promise.all([funderPage.waitForEvent('download'), funderPage.click('a[download]')]);
  results.csv = fs.readFileSync(await download.path(), 'utf8');

  // The whole federation: every node answered.
  await funderPage.goto(`${leipzig}/funder/federation?period=${year}`);
  results.federation = await text(funderPage, '.answer');
  results.federation_rows = await funderPage.locator('table.list').first().locator('tbody tr').count();
  await record(funderPage, 'funder-federation');

  // English on request.
  await funderPage.goto(`${leipzig}/funder?period=${year}&lang=en`);
  results.english_heading = await text(funderPage, 'h1');
  await record(funderPage, 'funder-en');

  results.violations = violations;
  return results;
}

async function issuerDown(browser) {
  const practice = await signedIn(browser, dresden, 'PRACTICE');
  const page = await practice.newPage();
  await checkCode(page, dresden, env('SCHEIN_SHORT_CODE'));
  const verdict = await text(page, '.answer .big');
  await record(page, 'practice-issuer-down');
  // The funder at Dresden's console: Leipzig is named as not reachable, its row missing.
  // With the PEM files, not the .p12: Playwright's proxy takes the CA inside a .p12 as the only
  // one to trust for that connection, and the funder's .p12 holds Leipzig's CA, not Dresden's.
  // (A browser keeps a .p12's CA apart from the server checks.)
  const funder = await newContext(browser, {
    origin: dresden,
    certPath: env('SCHEIN_FUNDER_CERT'),
    keyPath: env('SCHEIN_FUNDER_KEY'),
  });
  const funderPage = await funder.newPage();
  await funderPage.goto(`${dresden}/funder/federation?period=${new Date().getFullYear()}`);
  const federation = await text(funderPage, '.answer');
  await record(funderPage, 'funder-federation-partial');
  return { verdict, federation, violations };
}

await withBrowser(phase === 'main' ? main : issuerDown);
