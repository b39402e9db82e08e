-- One trial per user (issue 10, attack 4; API6-01): a user's first org may be on trial; every
-- further org they create starts on `unpaid`, a plan that admits no runs until a paid plan
-- is set (quotas' admission answers 402 `plan_required`).

-- No runs, no parallel runs, no budget. Projects and the request rate are a trial's, so the
-- org can be set up before it pays.
INSERT INTO plans (name, active_projects, runs_per_month, parallel_runs, wall_clock_cap_secs,
                   monthly_budget_cents, cost_cents_per_hour, requests_per_minute)
VALUES ('unpaid', 3, 0, 0, 900, 0, 120, 60);

-- The org a user's trial went to, set once (by `orgs::create`, in the transaction that
-- creates that org) and never cleared. Deliberately no foreign key: deleting, terminating or
-- leaving that org must not give the user a second trial.
ALTER TABLE users ADD COLUMN trial_org_id uuid;

-- Users who already own an org have had their trial: their earliest owned org.
UPDATE users u
   SET trial_org_id = (SELECT m.org_id FROM memberships m
                        WHERE m.user_id = u.id AND m.role = 'owner'
                        ORDER BY m.created_at, m.org_id LIMIT 1)
 WHERE u.trial_org_id IS NULL;
