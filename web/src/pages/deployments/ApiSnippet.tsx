import { useState } from "react";
import { Link } from "wouter";

import { CopyButton } from "../../components/CopyButton";
import { useI18n } from "../../i18n";

type Flavour = "python" | "curl";

/** The OpenAI-compatible API's base URL on this site. */
export function baseUrl(origin = window.location.origin): string {
  return `${origin.replace(/\/$/, "")}/v1`;
}

/** A snippet calling a deployment through the OpenAI-compatible API with the official client or curl. */
export function snippet(flavour: Flavour, base: string, model: string): string {
  if (flavour === "curl") {
    return [
      `curl ${base}/chat/completions \\`,
      `  -H "Authorization: Bearer $LLMCT_API_KEY" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d '{"model": "${model}", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}'`,
    ].join("\n");
  }
  return [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${base}", api_key=os.environ["LLMCT_API_KEY"])`,
    "stream = client.chat.completions.create(",
    `    model="${model}",`,
    '    messages=[{"role": "user", "content": "Hello"}],',
    "    stream=True,",
    ")",
    "for chunk in stream:",
    '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
  ].join("\n");
}

/**
 * How to call deployments from code: base URL, an API key from the account page, a copyable snippet. `model`: the
 * ready deployment's id; `adapter`: the adapter chosen in the playground, called by its own name.
 */
export function ApiSnippet({ model, adapter = null }: { model: string | null; adapter?: string | null }) {
  const { t } = useI18n();
  const [flavour, setFlavour] = useState<Flavour>("python");
  const base = baseUrl();
  const name = model && adapter ? adapter : model;
  const text = snippet(flavour, base, name ?? "dep_…");
  return (
    <section className="card" aria-labelledby="api-title">
      <div className="card__header">
        <h2 id="api-title">{t("api.title")}</h2>
        <CopyButton text={text} label={t("api.copy")} />
      </div>
      <p>
        {t("api.intro", { base })}{" "}
        <Link href="/account">{t("api.keys")}</Link>
      </p>
      <div className="tabs" role="group" aria-label={t("api.flavour")}>
        {(["python", "curl"] as Flavour[]).map((f) => (
          <button key={f} type="button" className="tab" aria-pressed={f === flavour} onClick={() => setFlavour(f)}>
            {f === "python" ? "Python (openai)" : "curl"}
          </button>
        ))}
      </div>
      <pre className="code" tabIndex={0} aria-label={t("api.snippet")} data-testid="api-snippet">
        {text}
      </pre>
      <p className="muted">{name ? t(name === adapter ? "api.modelIsAdapter" : "api.modelIs", { model: name }) : t("api.modelHint")}</p>
    </section>
  );
}
