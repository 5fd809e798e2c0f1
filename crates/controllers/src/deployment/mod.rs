//! The Deployment controller: one ReplicaSet per pod template (named after its
//! pod-template-hash), rolled over by the RollingUpdate or Recreate strategy, with revision
//! history, pause, and the Progressing / Available conditions `kubectl rollout status` reads.
//!
//! Level-triggered on kube-runtime's `Controller`: Deployments are watched, and so are the
//! ReplicaSets they own; every reconcile starts from the ReplicaSets as listed now.

pub mod logic;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::controller_utils::{controller_ref, event_reference};
use crate::runner::{drive, RetryBackoff};
use events::{EventRecorder, EventType};
use logic::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("deployment {0} has no spec")]
    NoSpec(String),
    #[error("hash collision for deployment {0}: collision count raised")]
    Collision(String),
}

struct Ctx {
    client: kube::Client,
    recorder: EventRecorder,
    backoff: RetryBackoff<Deployment>,
}

/// Runs the Deployment controller until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ctx = Arc::new(Ctx {
        recorder: EventRecorder::for_component(client.clone(), "deployment-controller", None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
    });
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<ReplicaSet>::all(client), watcher::Config::default());
    drive(
        "deployment",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

fn key(d: &Deployment) -> String {
    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
}

fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.backoff.failed(&d, err)
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn reference(d: &Deployment) -> ObjectReference {
    event_reference(d)
}

fn owner_ref(d: &Deployment) -> OwnerReference {
    controller_ref(d)
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&d, &ctx).await?;
    ctx.backoff.succeeded(&d);
    Ok(action)
}

struct Sync<'a> {
    ctx: &'a Ctx,
    rs_api: Api<ReplicaSet>,
    d: Deployment,
}

async fn sync(d: &Deployment, ctx: &Ctx) -> Result<Action, Error> {
    let ns = d.namespace().unwrap_or_default();
    let spec = d.spec.as_ref().ok_or_else(|| Error::NoSpec(key(d)))?;
    let mut s = Sync {
        ctx,
        rs_api: Api::namespaced(ctx.client.clone(), &ns),
        d: d.clone(),
    };
    let rss = s.replica_sets().await?;
    if d.metadata.deletion_timestamp.is_some() {
        return s.sync_status_only(rss).await;
    }
    s.check_paused_conditions().await?;
    if spec.paused == Some(true) {
        return s.scale_sync(rss).await;
    }
    let (new_rs, old) = split(&s.d, &rss);
    let mut all: Vec<&ReplicaSet> = old.clone();
    all.extend(new_rs);
    if is_scaling_event(&s.d, &all) {
        return s.scale_sync(rss).await;
    }
    if is_recreate(&s.d) {
        s.rollout_recreate(rss).await
    } else {
        s.rollout_rolling(rss).await
    }
}

/// (the new ReplicaSet, the old ones).
fn split<'a>(
    d: &Deployment,
    rss: &'a [ReplicaSet],
) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let new_rs = find_new(d, rss);
    let new_uid = new_rs.and_then(|r| r.metadata.uid.clone());
    let old = rss
        .iter()
        .filter(|r| r.metadata.uid != new_uid || new_uid.is_none())
        .collect();
    (new_rs, old)
}

impl Sync<'_> {
    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx
            .recorder
            .object_event(reference(&self.d), type_, reason, message);
    }

    /// The ReplicaSets this Deployment controls, adopting orphans its selector matches and
    /// releasing owned ones it no longer matches.
    async fn replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.uid().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for rs in self.rs_api.list(&ListParams::default()).await?.items {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = selector_matches(&selector, &labels);
            match controller_uid(&rs.metadata) {
                Some(u) if u == uid => {
                    if matches {
                        out.push(rs);
                    } else if self.d.metadata.deletion_timestamp.is_none() {
                        self.release(&rs).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches
                        && self.d.metadata.deletion_timestamp.is_none()
                        && rs.metadata.deletion_timestamp.is_none()
                    {
                        out.push(self.adopt(&rs).await?);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn adopt(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        let patch = serde_json::json!({
            "metadata": {
                "ownerReferences": [owner_ref(&self.d)],
                "uid": rs.metadata.uid,
            }
        });
        Ok(self
            .rs_api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await?)
    }

    async fn release(&self, rs: &ReplicaSet) -> Result<(), Error> {
        let mut rs = rs.clone();
        let uid = self.d.uid();
        if let Some(o) = rs.metadata.owner_references.as_mut() {
            o.retain(|r| Some(&r.uid) != uid.as_ref());
        }
        self.rs_api
            .replace(&rs.name_any(), &PostParams::default(), &rs)
            .await?;
        Ok(())
    }

    /// `getNewReplicaSet`: finds the new ReplicaSet and brings its revision and annotations
    /// up to date, or (when `create`) creates it.
    async fn new_rs(
        &mut self,
        rss: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let (existing, old) = split(&self.d, rss);
        let new_revision = max_revision(&old.iter().map(|r| (*r).clone()).collect::<Vec<_>>()) + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(existing) = existing {
            let mut rs = existing.clone();
            let mut changed = set_new_rs_annotations(&self.d, &mut rs, new_revision);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds != min_ready {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            let rs = if changed {
                self.rs_api
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await?
            } else {
                rs
            };
            self.set_deployment_revision(revision_of(&rs)).await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if progress_deadline(&self.d).is_some() && get_condition(&status, PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", rs.name_any());
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, &msg, &now()),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let spec = self
            .d
            .spec
            .clone()
            .ok_or_else(|| Error::NoSpec(key(&self.d)))?;
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.d.name_any(), hash);
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let replicas = new_rs_new_replicas(&self.d, &all, 0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![owner_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(&self.d, &mut rs, new_revision);
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = self.rs_api.get(&name).await?;
                let ours = controller_uid(&found.metadata) == self.d.uid().as_deref();
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    return Ok(Some(found));
                }
                // A hash collision: count it, so the next hash differs.
                let mut status = self.d.status.clone().unwrap_or_default();
                status.collision_count = Some(collision.unwrap_or(0).wrapping_add(1));
                self.write_status(status).await?;
                return Err(Error::Collision(key(&self.d)));
            }
            Err(e) => return Err(e.into()),
        };
        if replicas > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        self.set_deployment_revision(new_revision).await?;
        if progress_deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, &msg, &now()),
            );
            self.write_status(status).await?;
        }
        Ok(Some(created))
    }

    async fn set_deployment_revision(&mut self, revision: i64) -> Result<(), Error> {
        let rev = revision.to_string();
        let cur = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if cur == Some(&rev) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let mut d = self.d.clone();
        d.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.into(), rev);
        self.d = api
            .replace(&d.name_any(), &PostParams::default(), &d)
            .await?;
        Ok(())
    }

    async fn write_status(
        &mut self,
        status: k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let mut d = self.d.clone();
        d.status = Some(status);
        self.d = api
            .replace_status(&d.name_any(), &PostParams::default(), &d)
            .await?;
        Ok(())
    }

    /// `scaleReplicaSet`: new size and the desired/max annotations, with an event.
    async fn scale(&self, rs: &ReplicaSet, size: i32) -> Result<ReplicaSet, Error> {
        let old = rs_replicas(rs);
        if old == size && !replicas_annotations_mismatch(&self.d, rs) {
            return Ok(rs.clone());
        }
        let mut rs = rs.clone();
        rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(
            rs.metadata.annotations.get_or_insert_with(Default::default),
            replicas_of(&self.d),
            replicas_of(&self.d) + max_surge(&self.d),
        );
        let out = self
            .rs_api
            .replace(&rs.name_any(), &PostParams::default(), &rs)
            .await?;
        if old != size {
            let dir = if size > old { "up" } else { "down" };
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {dir} replica set {} from {old} to {size}",
                    rs.name_any()
                ),
            );
        }
        Ok(out)
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, PROGRESSING);
        let paused_cond = cond.and_then(|c| c.reason.as_deref()) == Some(PAUSED);
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let c = if paused && !paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused",
                &now(),
            )
        } else if !paused && paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed",
                &now(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        self.write_status(status).await
    }

    /// `sync`: scaling only (a paused Deployment, or a scaling event), then the status.
    async fn scale_sync(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let new_rs = self.new_rs(&rss, false).await?;
        let rss = self.replace_in(rss, new_rs.as_ref());
        let (new_ref, _) = split(&self.d, &rss);
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let new_idx =
            new_ref.and_then(|n| all.iter().position(|r| r.metadata.uid == n.metadata.uid));
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = proportional_sizes(&self.d, &all, new_idx, status_replicas);
        let mut changed: HashMap<usize, ReplicaSet> = HashMap::new();
        for (i, size) in sizes {
            changed.insert(i, self.scale(all[i], size).await?);
        }
        let rss: Vec<ReplicaSet> = rss
            .iter()
            .enumerate()
            .map(|(i, r)| changed.remove(&i).unwrap_or_else(|| r.clone()))
            .collect();
        let (new_ref, old) = split(&self.d, &rss);
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if paused {
            self.cleanup(&old).await?;
        }
        let mut all = old.clone();
        all.extend(new_ref);
        let status = calculate_status(&self.d, &all, new_ref, &now());
        self.write_status(status).await?;
        Ok(Action::await_change())
    }

    fn replace_in(&self, mut rss: Vec<ReplicaSet>, rs: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
        if let Some(rs) = rs {
            match rss.iter_mut().find(|r| r.metadata.uid == rs.metadata.uid) {
                Some(slot) => *slot = rs.clone(),
                None => rss.push(rs.clone()),
            }
        }
        rss
    }

    async fn sync_status_only(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (new_ref, old) = split(&self.d, &rss);
        let mut all = old.clone();
        all.extend(new_ref);
        let status = calculate_status(&self.d, &all, new_ref, &now());
        self.write_status(status).await?;
        Ok(Action::await_change())
    }

    async fn cleanup(&self, old: &[&ReplicaSet]) -> Result<(), Error> {
        for rs in history_to_delete(&self.d, old) {
            tracing::debug!(replicaset = %rs.name_any(), "deleting old replica set");
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn rollout_rolling(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let new_rs = self.new_rs(&rss, true).await?;
        let mut rss = self.replace_in(rss, new_rs.as_ref());
        // Scale up the new ReplicaSet.
        let (new_ref, old) = split(&self.d, &rss);
        let mut all: Vec<&ReplicaSet> = old.clone();
        all.extend(new_ref);
        if let Some(n) = new_ref {
            let cur = rs_replicas(n);
            let target = if cur > replicas_of(&self.d) {
                replicas_of(&self.d)
            } else {
                new_rs_new_replicas(&self.d, &all, cur)
            };
            if target != cur {
                let scaled = self.scale(n, target).await?;
                rss = self.replace_in(rss, Some(&scaled));
                return self.rollout_status(rss).await;
            }
        }
        // Scale down the old ones.
        let (new_ref, old) = split(&self.d, &rss);
        let mut all: Vec<&ReplicaSet> = old.clone();
        all.extend(new_ref);
        let old_pods: i32 = old.iter().map(|r| rs_replicas(r)).sum();
        if old_pods > 0 {
            let max_down = max_scaled_down(&self.d, &all, new_ref);
            if max_down > 0 {
                let (unhealthy, cleaned) = cleanup_unhealthy(&old, max_down);
                let mut changed: HashMap<String, ReplicaSet> = HashMap::new();
                for (i, size) in unhealthy {
                    let r = self.scale(old[i], size).await?;
                    changed.insert(r.uid().unwrap_or_default(), r);
                }
                let rss2: Vec<ReplicaSet> = rss
                    .iter()
                    .map(|r| {
                        changed
                            .remove(&r.uid().unwrap_or_default())
                            .unwrap_or_else(|| r.clone())
                    })
                    .collect();
                let (new_ref2, old2) = split(&self.d, &rss2);
                let mut all2: Vec<&ReplicaSet> = old2.clone();
                all2.extend(new_ref2);
                let mut scaled_any = cleaned > 0;
                if max_down - cleaned > 0 {
                    let mut updates: HashMap<String, ReplicaSet> = HashMap::new();
                    for (i, size) in scale_down_old_rolling(&self.d, &all2, &old2) {
                        let r = self.scale(old2[i], size).await?;
                        updates.insert(r.uid().unwrap_or_default(), r);
                        scaled_any = true;
                    }
                    let rss3: Vec<ReplicaSet> = rss2
                        .iter()
                        .map(|r| {
                            updates
                                .remove(&r.uid().unwrap_or_default())
                                .unwrap_or_else(|| r.clone())
                        })
                        .collect();
                    rss = rss3;
                } else {
                    rss = rss2;
                }
                if scaled_any {
                    return self.rollout_status(rss).await;
                }
            }
        }
        self.finish(rss).await
    }

    /// Clean-up once complete, then the rollout status.
    async fn finish(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (new_ref, old) = split(&self.d, &rss);
        let mut all = old.clone();
        all.extend(new_ref);
        let status = calculate_status(&self.d, &all, new_ref, &now());
        if is_complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.rollout_status(rss).await
    }

    async fn rollout_status(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (new_ref, old) = split(&self.d, &rss);
        let mut all = old.clone();
        all.extend(new_ref);
        let t = now();
        let mut status = calculate_status(&self.d, &all, new_ref, &t);
        let name = new_ref.map(|r| r.name_any());
        rollout_conditions(&self.d, &mut status, name.as_deref(), &t);
        replica_failure(&mut status, &all, new_ref);
        let requeue = requeue_for_deadline(&self.d, &status, &t);
        self.write_status(status).await?;
        Ok(match requeue {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        })
    }

    async fn rollout_recreate(&mut self, rss: Vec<ReplicaSet>) -> Result<Action, Error> {
        let new_rs = self.new_rs(&rss, false).await?;
        let mut rss = self.replace_in(rss, new_rs.as_ref());
        // Scale every old ReplicaSet down to zero first.
        let (_, old) = split(&self.d, &rss);
        let mut changed: HashMap<String, ReplicaSet> = HashMap::new();
        for rs in old.iter().filter(|r| rs_replicas(r) > 0) {
            let r = self.scale(rs, 0).await?;
            changed.insert(r.uid().unwrap_or_default(), r);
        }
        if !changed.is_empty() {
            let rss: Vec<ReplicaSet> = rss
                .iter()
                .map(|r| {
                    changed
                        .remove(&r.uid().unwrap_or_default())
                        .unwrap_or_else(|| r.clone())
                })
                .collect();
            return self.rollout_status(rss).await;
        }
        // Then wait for their pods to go.
        if self.old_pods_running(&rss).await? {
            self.rollout_status(rss).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        if new_rs.is_none() {
            let created = self.new_rs(&rss, true).await?;
            rss = self.replace_in(rss, created.as_ref());
        }
        let (new_ref, _) = split(&self.d, &rss);
        if let Some(n) = new_ref {
            if rs_replicas(n) != replicas_of(&self.d) {
                let scaled = self.scale(n, replicas_of(&self.d)).await?;
                rss = self.replace_in(rss, Some(&scaled));
                return self.rollout_status(rss).await;
            }
        }
        self.finish(rss).await
    }

    /// `oldPodsRunning`: old ReplicaSets still report replicas, or pods they own are not yet
    /// terminated (Failed and Succeeded pods do not run).
    async fn old_pods_running(&self, rss: &[ReplicaSet]) -> Result<bool, Error> {
        let (new_ref, old) = split(&self.d, rss);
        if old.iter().any(|r| rs_status_replicas(r) > 0) {
            return Ok(true);
        }
        let new_uid = new_ref.and_then(|n| n.uid());
        let old_uids: Vec<String> = old.iter().filter_map(|r| r.uid()).collect();
        let pods: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        for p in pods.list(&ListParams::default()).await?.items {
            let Some(owner) = controller_uid(&p.metadata) else {
                continue;
            };
            if Some(owner) == new_uid.as_deref() || !old_uids.iter().any(|u| u == owner) {
                continue;
            }
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if !matches!(phase, Some("Failed") | Some("Succeeded")) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
