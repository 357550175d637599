// The key panel: paste an API key once per browser session; it is checked against the API
// before any page content is shown, and forgotten when the API rejects it.

import { ApiError, apiRequest, clearKey, getKey, onUnauthorized, setKey } from "./api.js";
import { byId, h, replace, show } from "./dom.js";

const KEY_CHECK_PATH = "/v1/jobs?limit=1";

function keyLabel(key) {
  // The key's public prefix ("clo_" + 8 chars) identifies it without revealing it.
  return `${key.slice(0, 12)}…`;
}

function renderSignedIn(panel) {
  const forget = h("button", { type: "button", class: "secondary", id: "forget-key" }, "Forget key");
  forget.addEventListener("click", () => {
    clearKey();
    window.location.reload();
  });
  replace(panel, h("span", { class: "key-label" }, "API key ", h("code", {}, keyLabel(getKey()))), forget);
}

function renderForm(panel, errorText, onKey) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "clo_…",
    "aria-describedby": "api-key-help api-key-error",
  });
  const error = h("p", { id: "api-key-error", class: "key-error", role: "alert" }, errorText || "");
  show(error, Boolean(errorText));
  const form = h(
    "form",
    { id: "key-form", class: "key-form", "aria-label": "API key" },
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Use key"),
    h("span", { id: "api-key-help", class: "hint" }, "Kept in this tab only; sent as a Bearer token."),
    error,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = "Paste an API key first.";
      show(error);
      input.focus();
      return;
    }
    onKey(key);
  });
  replace(panel, form);
  if (errorText) input.focus();
  return { input, error };
}

function describe(error) {
  if (error instanceof ApiError && error.status === 401) {
    return `The API did not accept this key: ${error.message}. Paste a valid key.`;
  }
  return `Could not check the key: ${error.message}`;
}

async function check(key) {
  await apiRequest(KEY_CHECK_PATH, { key });
}

// Shows the key panel; calls onReady() once a working key is in place.
export async function withApiKey(onReady) {
  const panel = byId("key-panel");
  const needsKey = byId("needs-key");
  const content = byId("page-content");

  onUnauthorized((error) => {
    clearKey();
    show(content, false);
    show(needsKey);
    renderForm(panel, describe(error), accept);
  });

  async function accept(key) {
    try {
      await check(key);
    } catch (error) {
      renderForm(panel, describe(error), accept);
      show(needsKey);
      return;
    }
    const first = !getKey();
    setKey(key);
    renderSignedIn(panel);
    show(needsKey, false);
    show(content);
    if (first) {
      byId("main").focus();
    }
    onReady();
  }

  const key = getKey();
  if (key) {
    try {
      await check(key);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) clearKey();
      show(needsKey);
      renderForm(panel, describe(error), accept);
      return;
    }
    renderSignedIn(panel);
    show(content);
    onReady();
  } else {
    show(needsKey);
    renderForm(panel, "", accept);
  }
}

export function markNav(page) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
  }
}
