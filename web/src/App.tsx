import { Redirect, Route, Switch } from "wouter";

import { HOME_PATH } from "./auth/paths";
import { RedirectIfSignedIn, RequireAuth } from "./auth/RequireAuth";
import { SessionProvider } from "./auth/session";
import { SECTIONS, Shell } from "./components/Shell";
import type { MessageKey } from "./i18n/en";
import { AccountPage } from "./pages/AccountPage";
import { ComingSoonPage } from "./pages/ComingSoonPage";
import { LoginPage } from "./pages/LoginPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { RegisterPage } from "./pages/RegisterPage";

const DESCRIPTIONS: Record<string, MessageKey> = {
  "/jobs": "soon.jobs",
  "/datasets": "soon.datasets",
  "/models": "soon.models",
  "/deployments": "soon.deployments",
  "/agents": "soon.agents",
};

function SignedInRoutes() {
  return (
    <RequireAuth>
      <Shell>
        <Switch>
          <Route path="/account" component={AccountPage} />
          {SECTIONS.map(({ path, label }) => (
            <Route key={path} path={path}>
              <ComingSoonPage title={label} description={DESCRIPTIONS[path] ?? "soon.title"} />
            </Route>
          ))}
          <Route component={NotFoundPage} />
        </Switch>
      </Shell>
    </RequireAuth>
  );
}

/** Every route of the client. The gateway answers any unknown path with index.html, so deep links work. */
export function AppRoutes() {
  return (
    <Switch>
      <Route path="/login">
        <RedirectIfSignedIn>
          <LoginPage />
        </RedirectIfSignedIn>
      </Route>
      <Route path="/register">
        <RedirectIfSignedIn>
          <RegisterPage />
        </RedirectIfSignedIn>
      </Route>
      <Route path="/">
        <Redirect to={HOME_PATH} replace />
      </Route>
      <Route>
        <SignedInRoutes />
      </Route>
    </Switch>
  );
}

export function App() {
  return (
    <SessionProvider>
      <AppRoutes />
    </SessionProvider>
  );
}
