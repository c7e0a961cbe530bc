/**
 * Who is signed in. The token in localStorage is the source of truth; the user record is
 * fetched from /api/auth/me whenever the token changes (here or in another tab).
 */

import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import { useLocation } from "wouter";

import { authApi } from "../api/auth";
import { ApiError, setUnauthorizedHandler } from "../api/client";
import { tokenStore } from "../api/token";
import type { User } from "../api/types";
import { loginPath } from "./paths";

export type SessionState =
  | { status: "loading" }
  | { status: "signed-out" }
  | { status: "signed-in"; user: User }
  | { status: "error"; error: ApiError };

interface SessionContextValue {
  state: SessionState;
  login: (username: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
  /** Fetch /me again (after a failure). */
  reload: () => void;
}

const SessionContext = createContext<SessionContextValue | null>(null);

/** What /me said for one token. */
interface Lookup {
  token: string;
  state: SessionState;
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const token = useSyncExternalStore(tokenStore.subscribe, tokenStore.get);
  const [lookup, setLookup] = useState<Lookup | null>(null);
  const [attempt, setAttempt] = useState(0);
  const [location, navigate] = useLocation();

  useEffect(() => {
    if (!token) return;
    const controller = new AbortController();
    authApi
      .me(controller.signal)
      .then((user) => setLookup({ token, state: { status: "signed-in", user } }))
      .catch((error: unknown) => {
        if (controller.signal.aborted) return;
        // A 401 has already cleared the token, which reads as signed-out.
        if (error instanceof ApiError && error.status !== 401) setLookup({ token, state: { status: "error", error } });
      });
    return () => controller.abort();
  }, [token, attempt]);

  // Derived, so a new or cleared token never shows the previous token's user, not even for one render.
  const state = useMemo<SessionState>(() => {
    if (!token) return { status: "signed-out" };
    return lookup?.token === token ? lookup.state : { status: "loading" };
  }, [token, lookup]);

  // A 401 on any call means the session ended: go to login and come back here afterwards.
  useEffect(
    () => setUnauthorizedHandler(() => navigate(loginPath({ reason: "expired", next: location }), { replace: true })),
    [location, navigate],
  );

  const login = useCallback(async (username: string, password: string) => {
    const answer = await authApi.login(username, password);
    tokenStore.set(answer.access_token, answer.expires_in);
  }, []);

  const logout = useCallback(async () => {
    try {
      await authApi.logout();
    } catch {
      // The token is dropped here whatever the server said; an expired one is already dead.
    }
    // Same tick: React renders the login page once, already signed out.
    navigate(loginPath({ reason: "logged-out" }), { replace: true });
    tokenStore.clear();
  }, [navigate]);

  const reload = useCallback(() => {
    setLookup(null);
    setAttempt((n) => n + 1);
  }, []);

  const value = useMemo(() => ({ state, login, logout, reload }), [state, login, logout, reload]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionContextValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}

/** The signed-in user; only for pages rendered inside RequireAuth. */
export function useUser(): User {
  const { state } = useSession();
  if (state.status !== "signed-in") throw new Error("useUser outside a signed-in page");
  return state.user;
}
