// The Açık Kapı counter: an officer types in a spoken or written application (channel
// "counter"), scans the petition in, and prints the receipt. The officer's token is kept in
// this tab's sessionStorage only and sent as `Authorization: Bearer`.
import {
  Attachments, FormView, IdentityConsent, Pickers, Position, applicationBody, callApi,
  enableScripted, newKey,
} from "./forms.js";

const TOKEN_KEY = "acikkapi.gise.token";
const signInSection = document.getElementById("oturum");
const signInForm = document.getElementById("oturum-formu");
const tokenInput = document.getElementById("token");
const tokenError = document.getElementById("token-error");
const consoleSection = document.getElementById("gise");
const form = document.getElementById("gise-formu");
const registered = document.getElementById("kayit");
const sending = document.getElementById("gonderim-durum");
const receiptButton = document.getElementById("makbuz");
const receiptLink = document.getElementById("makbuz-bag");
const receiptStatus = document.getElementById("makbuz-durum");

const view = new FormView(form);
const pickers = new Pickers(form);
const position = new Position(form);
new IdentityConsent(form);
const attachments = new Attachments(form, {
  headers: () => bearer(),
  onRefused: (status) => refused(status),
});

let idempotencyKey = newKey();
let busy = false;
let last = null; // the application registered last: {application_id, application_number}
let receiptUrl = null;

enableScripted();

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function bearer() {
  return { Authorization: `Bearer ${token()}` };
}

// --- signing in and out ----------------------------------------------------------------------

async function signIn(value, { quiet = false } = {}) {
  tokenError.textContent = "";
  tokenInput.removeAttribute("aria-invalid");
  const answer = await callApi("/api/v1/session", { headers: { Authorization: `Bearer ${value}` } });
  if (!answer.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(quiet ? "" : answer.errors[0].message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  tokenInput.value = "";
  const officer = answer.data;
  document.getElementById("gorevli").textContent = `Görevli: ${officer.subject}`;
  const province = form.querySelector("#province_code");
  if (officer.province_code && String(officer.province_code) !== province.value) {
    await pickers.load(officer.province_code);
  }
  signInSection.hidden = true;
  consoleSection.hidden = false;
  (registered.hidden ? view.control("applicant.tckn") : receiptButton).focus();
}

function showSignIn(message = "") {
  consoleSection.hidden = true;
  signInSection.hidden = false;
  tokenError.textContent = message;
  if (message) tokenInput.setAttribute("aria-invalid", "true");
  tokenInput.focus();
}

// A refused token ends the session; what was typed stays for after the new sign-in.
function refused(status) {
  if (status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn("Oturumunuzun süresi doldu ya da anahtar geçersiz; lütfen yeniden oturum açın. " +
      "Girdiğiniz bilgiler korunuyor.");
  }
}

signInForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = tokenInput.value.trim().replace(/^Bearer\s+/i, "");
  if (!value) {
    tokenError.textContent = "Oturum anahtarını yapıştırın.";
    tokenInput.setAttribute("aria-invalid", "true");
    tokenInput.focus();
    return;
  }
  signIn(value);
});

document.getElementById("oturum-kapat").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  newEntry({ ask: false });
  showSignIn();
});

// --- registering -------------------------------------------------------------------------------

function summaryLine(body) {
  const label = (id) => {
    const select = form.querySelector(`#${id}`);
    return select.value ? select.selectedOptions[0].textContent : "";
  };
  const parts = [
    `${body.applicant.first_name} ${body.applicant.last_name}`,
    label("application_type"),
    body.district,
  ];
  if (body.priority) parts.push(`Öncelik: ${label("priority")}`);
  if (body.attachments) parts.push(`${body.attachments.length} ek`);
  return parts.join(" · ");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy || consoleSection.hidden || form.hidden) return;
  if (!view.readyToSend(attachments)) return;
  busy = true;
  sending.textContent = "Kaydediliyor…";
  try {
    const body = applicationBody(view, { channel: "counter", position, attachments });
    const priority = view.value("priority");
    if (priority) body.priority = priority;
    const answer = await callApi("/api/v1/applications", {
      method: "POST", json: body, headers: { ...bearer(), "Idempotency-Key": idempotencyKey },
    });
    sending.textContent = "";
    if (answer.status === 201) {
      last = answer.data;
      view.hideSummary();
      document.getElementById("basvuru-no").textContent = last.application_number;
      document.getElementById("kayit-ozet").textContent = summaryLine(body);
      form.hidden = true;
      registered.hidden = false;
      receiptButton.focus();
      return;
    }
    if (answer.status === 401) {
      refused(401);
      return;
    }
    view.showErrors(answer.errors, "Başvuru kaydedilemedi");
  } finally {
    busy = false;
  }
});

// Enter in a picker saves too (in a text field the browser does it; in the text area it is a
// new line).
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.tagName === "SELECT" && !event.altKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

// --- the receipt ----------------------------------------------------------------------------------

receiptButton.addEventListener("click", async () => {
  if (!last) return;
  receiptStatus.textContent = "Makbuz hazırlanıyor…";
  let response;
  try {
    response = await fetch(`/api/v1/applications/${encodeURIComponent(last.application_id)}/receipt.pdf`, {
      headers: bearer(),
    });
  } catch {
    receiptStatus.textContent = "Sunucuya ulaşılamadı; makbuz alınamadı. Tekrar deneyin.";
    return;
  }
  if (!response.ok) {
    if (response.status === 401) refused(401);
    let message = `Makbuz alınamadı (HTTP ${response.status}).`;
    try {
      message = (await response.json()).errors[0].message;
    } catch {
      // the status says enough
    }
    receiptStatus.textContent = message;
    return;
  }
  if (receiptUrl) URL.revokeObjectURL(receiptUrl);
  receiptUrl = URL.createObjectURL(await response.blob());
  receiptLink.href = receiptUrl;
  receiptLink.download = `makbuz-${last.application_number}.pdf`;
  receiptLink.hidden = false;
  const opened = window.open(receiptUrl, "_blank");
  receiptStatus.textContent = opened
    ? "Makbuz yeni sekmede açıldı; oradan yazdırabilirsiniz."
    : "Tarayıcı yeni sekmeyi engelledi; “Makbuzu aç (PDF)” bağlantısını kullanın.";
});

// --- a new entry ----------------------------------------------------------------------------------

function hasTyping() {
  return [...form.querySelectorAll("input[data-path]:not([type=hidden]), textarea")]
    .some((control) => control.value.trim()) || attachments.items.length > 0;
}

function newEntry({ ask = true } = {}) {
  if (ask && !form.hidden && hasTyping() && !window.confirm("Girilen bilgiler silinsin mi?")) return;
  form.reset();
  pickers.reset();
  position.clear();
  attachments.clear();
  view.clearErrors();
  sending.textContent = "";
  receiptStatus.textContent = "";
  receiptLink.hidden = true;
  if (receiptUrl) URL.revokeObjectURL(receiptUrl);
  receiptUrl = null;
  last = null;
  idempotencyKey = newKey();
  registered.hidden = true;
  form.hidden = false;
  view.control("applicant.tckn").focus();
}

document.getElementById("yeni-kayit").addEventListener("click", () => newEntry({ ask: false }));

// Alt+S saves, Alt+Y starts a new entry: by the letter printed on the key (Turkish Q or F),
// or by its place where Alt makes another character (macOS).
document.addEventListener("keydown", (event) => {
  if (!event.altKey || event.ctrlKey || event.metaKey || consoleSection.hidden) return;
  const letter = /^[a-z]$/i.test(event.key) ? event.key.toLowerCase() : event.code.replace("Key", "").toLowerCase();
  if (letter === "s") {
    event.preventDefault();
    if (!form.hidden) form.requestSubmit();
  } else if (letter === "y") {
    event.preventDefault();
    newEntry({ ask: registered.hidden });
  }
});

const stored = token();
if (stored) signIn(stored, { quiet: true });
else showSignIn();
