/**
 * The access token, kept in localStorage so a reload or a second tab stays signed in.
 * Listeners hear every change, including those made by another tab.
 */

const TOKEN_KEY = "llmct.access_token";
const EXPIRES_KEY = "llmct.access_token_expires_at";

type Listener = () => void;
const listeners = new Set<Listener>();

function notify(): void {
  for (const listener of listeners) listener();
}

function read(key: string): string | null {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage disabled (private mode, policy): behave as signed out
  }
}

export const tokenStore = {
  /** The stored token, or null when there is none or it has expired. */
  get(): string | null {
    const token = read(TOKEN_KEY);
    const expiresAt = Number(read(EXPIRES_KEY) ?? "0");
    if (!token) return null;
    if (expiresAt && Date.now() >= expiresAt) return null;
    return token;
  },

  /** Keep a token that the API says lives `expiresInS` seconds. */
  set(token: string, expiresInS?: number): void {
    window.localStorage.setItem(TOKEN_KEY, token);
    if (expiresInS) window.localStorage.setItem(EXPIRES_KEY, String(Date.now() + expiresInS * 1000));
    else window.localStorage.removeItem(EXPIRES_KEY);
    notify();
  },

  clear(): void {
    try {
      window.localStorage.removeItem(TOKEN_KEY);
      window.localStorage.removeItem(EXPIRES_KEY);
    } catch {
      // nothing stored, nothing to clear
    }
    notify();
  },

  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    const onStorage = (event: StorageEvent) => {
      if (event.key === null || event.key === TOKEN_KEY) listener();
    };
    window.addEventListener("storage", onStorage);
    return () => {
      listeners.delete(listener);
      window.removeEventListener("storage", onStorage);
    };
  },
};
