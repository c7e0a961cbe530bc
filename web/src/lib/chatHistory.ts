/**
 * Playground conversations kept in this browser (localStorage), one per deployment. Nothing here reaches the
 * server: a chat turn sends the conversation with it. Old conversations make room for new ones.
 */

import type { ChatMessage } from "../api/deployments";

const PREFIX = "llmct.chat.";
/** Conversations kept; the least recently used go first. */
export const MAX_CONVERSATIONS = 20;
/** Messages kept per conversation (the newest). */
export const MAX_MESSAGES = 200;

interface Stored {
  messages: ChatMessage[];
  updated: number;
}

function keyOf(deploymentId: string): string {
  return `${PREFIX}${deploymentId}`;
}

function isMessage(value: unknown): value is ChatMessage {
  if (typeof value !== "object" || value === null) return false;
  const { role, content, model } = value as { role?: unknown; content?: unknown; model?: unknown };
  return (role === "user" || role === "assistant" || role === "system") && typeof content === "string" && (model === undefined || typeof model === "string");
}

function read(key: string): Stored | null {
  try {
    const raw = window.localStorage.getItem(key);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Partial<Stored>;
    if (!Array.isArray(parsed.messages)) return null;
    return { messages: parsed.messages.filter(isMessage), updated: Number(parsed.updated) || 0 };
  } catch {
    return null; // unreadable or storage disabled: start afresh
  }
}

/** The conversation kept for a deployment (empty when none). */
export function loadChat(deploymentId: string): ChatMessage[] {
  return read(keyOf(deploymentId))?.messages ?? [];
}

/** Keep a conversation; an empty one is forgotten. Returns false when the browser would not store it. */
export function saveChat(deploymentId: string, messages: ChatMessage[], now = Date.now()): boolean {
  const key = keyOf(deploymentId);
  try {
    if (messages.length === 0) {
      window.localStorage.removeItem(key);
      return true;
    }
    const stored: Stored = { messages: messages.slice(-MAX_MESSAGES), updated: now };
    pruneChats(MAX_CONVERSATIONS - 1, key);
    window.localStorage.setItem(key, JSON.stringify(stored));
    return true;
  } catch {
    return false; // quota exceeded or storage disabled
  }
}

export function clearChat(deploymentId: string): void {
  try {
    window.localStorage.removeItem(keyOf(deploymentId));
  } catch {
    // nothing stored anyway
  }
}

/** Forget the least recently used conversations beyond `keep` (not counting `except`). */
export function pruneChats(keep: number, except?: string): void {
  const kept: { key: string; updated: number }[] = [];
  for (let i = 0; i < window.localStorage.length; i += 1) {
    const key = window.localStorage.key(i);
    if (!key || !key.startsWith(PREFIX) || key === except) continue;
    kept.push({ key, updated: read(key)?.updated ?? 0 });
  }
  kept.sort((a, b) => b.updated - a.updated);
  for (const { key } of kept.slice(Math.max(0, keep))) window.localStorage.removeItem(key);
}
