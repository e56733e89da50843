// The citizen's web form: check the fields, confirm the mobile number with an SMS code, then
// register the application (channel "web"). The code and the confirmation token live only in
// this page's memory, never in the browser's storage or a cookie.
import {
  Attachments, FormView, IdentityConsent, Pickers, Position, applicationBody, callApi, coolDown,
  enableScripted, nationalMobile, newKey, RULES,
} from "./forms.js";

const form = document.getElementById("basvuru-formu");
const view = new FormView(form, {
  // The verification endpoints name their own fields; the application names the token.
  aliases: { phone: "applicant.phone", phone_verification: "code" },
});
const pickers = new Pickers(form);
const position = new Position(form);
const attachments = new Attachments(form);
new IdentityConsent(form);
const sendCode = document.getElementById("kod-gonder");
const codeStatus = document.getElementById("kod-durum");
const submit = document.getElementById("gonder");
const sending = document.getElementById("gonderim-durum");
const SEND_LABEL = "Doğrulama kodu gönder";
const RESEND_LABEL = "Yeni kod gönder";

let idempotencyKey = newKey();
let verification = null; // {id, phone}: a code was sent to this number
let confirmed = null; // {token, phone}: the code was right
let busy = false;

enableScripted(form);

function forgetVerification(message = "") {
  verification = null;
  confirmed = null;
  clearInterval(sendCode._coolDown);
  sendCode.disabled = false;
  sendCode.textContent = SEND_LABEL;
  codeStatus.textContent = message;
}

form.querySelector("#phone").addEventListener("input", (event) => {
  const phone = nationalMobile(event.target.value);
  const verified = confirmed?.phone ?? verification?.phone;
  if (verified && phone !== verified) {
    forgetVerification("Telefon numarası değişti; yeni numara için doğrulama kodu isteyin.");
  }
});

sendCode.addEventListener("click", async () => {
  view.clearError("applicant.phone");
  view.clearError("code");
  const phoneControl = view.control("applicant.phone");
  const problem = RULES["applicant.phone"](phoneControl.value, phoneControl);
  if (problem) {
    view.setError("applicant.phone", problem);
    phoneControl.focus();
    return;
  }
  sendCode.disabled = true;
  codeStatus.textContent = "Doğrulama kodu gönderiliyor…";
  const answer = await callApi("/api/v1/verifications", {
    method: "POST", json: { phone: phoneControl.value.trim() },
  });
  if (answer.status === 201) {
    verification = { id: answer.data.verification_id, phone: nationalMobile(phoneControl.value) };
    confirmed = null;
    codeStatus.textContent = `Doğrulama kodu ${answer.data.phone_masked} numarasına SMS ile ` +
      "gönderildi. Kodu aşağıya yazın.";
    coolDown(sendCode, answer.data.resend_after ?? 60, RESEND_LABEL);
    view.control("code").value = "";
    view.control("code").focus();
    return;
  }
  const message = answer.errors[0].message;
  if (answer.status === 422) {
    codeStatus.textContent = "";
    for (const error of answer.errors) view.setError(error.field ?? "applicant.phone", error.message);
    phoneControl.focus();
    sendCode.disabled = false;
  } else if (answer.status === 429) {
    codeStatus.textContent = message;
    coolDown(sendCode, answer.retryAfter ?? 60, verification ? RESEND_LABEL : SEND_LABEL);
  } else if (answer.status === 404) {
    codeStatus.textContent = "Telefon doğrulaması şu anda yapılamıyor; lütfen daha sonra tekrar deneyin.";
    sendCode.disabled = false;
  } else {
    codeStatus.textContent = message;
    sendCode.disabled = false;
  }
});

// The code, once: a right code gives a token for the application; a used-up one a new code.
async function confirmCode() {
  const code = view.value("code").trim();
  const answer = await callApi(`/api/v1/verifications/${encodeURIComponent(verification.id)}/confirm`, {
    method: "POST", json: { code },
  });
  if (answer.ok) {
    confirmed = { token: answer.data.phone_verification, phone: verification.phone };
    return [];
  }
  if (answer.status === 410) {
    forgetVerification();
    sendCode.textContent = RESEND_LABEL;
    return answer.errors.map((e) => ({ path: "code", message: `${e.message} “${RESEND_LABEL}” düğmesine basın.` }));
  }
  return answer.errors.map((e) => ({ path: e.field ?? "code", message: e.message }));
}

async function register() {
  const body = applicationBody(view, { channel: "web", position, attachments });
  body.phone_verification = confirmed.token;
  return callApi("/api/v1/applications", {
    method: "POST", json: body, headers: { "Idempotency-Key": idempotencyKey },
  });
}

function done(accepted) {
  document.getElementById("form-bolumu").hidden = true;
  const panel = document.getElementById("tamam");
  document.getElementById("basvuru-no").textContent = accepted.application_number;
  panel.hidden = false;
  panel.focus();
  // Nothing of the confirmation outlives the application it was for.
  verification = null;
  confirmed = null;
  idempotencyKey = newKey();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  const unverified = verification || confirmed ? [] : [{
    path: "code", message: "Önce “Doğrulama kodu gönder” düğmesine basarak telefonunuzu doğrulayın.",
  }];
  if (!view.readyToSend(attachments, unverified)) return;
  busy = true;
  let waiting = false;
  submit.disabled = true;
  sending.textContent = "Başvurunuz gönderiliyor…";
  try {
    if (!confirmed) {
      const problems = await confirmCode();
      if (problems.length) {
        sending.textContent = "";
        view.showErrors(problems, "Telefonunuz doğrulanamadı");
        return;
      }
    }
    const answer = await register();
    sending.textContent = "";
    if (answer.status === 201) {
      done(answer.data);
      return;
    }
    if (answer.status === 401) forgetVerification(); // the token ran out: a new code is needed
    view.showErrors(answer.errors, "Başvurunuz gönderilemedi");
    if ((answer.status === 429 || answer.status === 503) && answer.retryAfter) {
      waiting = true;
      coolDown(submit, Math.min(answer.retryAfter, 60), "Başvuruyu gönder", "Bekleyin");
    }
  } finally {
    busy = false;
    if (!waiting) submit.disabled = false;
  }
});

document.getElementById("yeni-basvuru").addEventListener("click", () => {
  form.reset();
  pickers.reset();
  position.clear();
  attachments.clear();
  view.clearErrors();
  forgetVerification();
  document.getElementById("tamam").hidden = true;
  document.getElementById("form-bolumu").hidden = false;
  view.control("applicant.tckn").focus();
});
