import { Redirect, Route, Switch } from "wouter";

import { HOME_PATH } from "./auth/paths";
import { RedirectIfSignedIn, RequireAuth } from "./auth/RequireAuth";
import { SessionProvider } from "./auth/session";
import { Shell } from "./components/Shell";
import { AccountPage } from "./pages/AccountPage";
import { LoginPage } from "./pages/LoginPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { RegisterPage } from "./pages/RegisterPage";
import { AgentDetailPage } from "./pages/agents/AgentDetailPage";
import { AgentsPage } from "./pages/agents/AgentsPage";
import { DatasetDetailPage } from "./pages/datasets/DatasetDetailPage";
import { DatasetsPage } from "./pages/datasets/DatasetsPage";
import { DeploymentsPage } from "./pages/deployments/DeploymentsPage";
import { PlaygroundPage } from "./pages/deployments/PlaygroundPage";
import { ComparePage } from "./pages/evals/ComparePage";
import { EvalsPage } from "./pages/evals/EvalsPage";
import { ExportsPage } from "./pages/exports/ExportsPage";
import { JobDetailPage } from "./pages/jobs/JobDetailPage";
import { JobsPage } from "./pages/jobs/JobsPage";
import { NewJobPage } from "./pages/jobs/NewJobPage";
import { ModelDetailPage } from "./pages/models/ModelDetailPage";
import { ModelsPage } from "./pages/models/ModelsPage";
import { WebhooksPage } from "./pages/webhooks/WebhooksPage";

function SignedInRoutes() {
  return (
    <RequireAuth>
      <Shell>
        <Switch>
          <Route path="/account" component={AccountPage} />
          <Route path="/jobs" component={JobsPage} />
          <Route path="/jobs/new" component={NewJobPage} />
          <Route path="/jobs/:id">{(params) => <JobDetailPage key={params.id} id={params.id} />}</Route>
          <Route path="/evals" component={EvalsPage} />
          <Route path="/evals/compare" component={ComparePage} />
          <Route path="/datasets" component={DatasetsPage} />
          <Route path="/datasets/:id">{(params) => <DatasetDetailPage key={params.id} id={params.id} />}</Route>
          <Route path="/models" component={ModelsPage} />
          <Route path="/models/:id">{(params) => <ModelDetailPage key={params.id} id={params.id} />}</Route>
          <Route path="/exports" component={ExportsPage} />
          <Route path="/deployments" component={DeploymentsPage} />
          <Route path="/playground" component={PlaygroundPage} />
          <Route path="/agents" component={AgentsPage} />
          <Route path="/agents/:id">{(params) => <AgentDetailPage key={params.id} id={decodeURIComponent(params.id)} />}</Route>
          <Route path="/webhooks" component={WebhooksPage} />
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
