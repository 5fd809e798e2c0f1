//! The garbage collector's decisions, as pure functions over object metadata.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PropagationPolicy;

use super::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};

/// What became of an owner named by an ownerReference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists and is not being deleted in the foreground.
    Solid,
    /// It is being deleted in the foreground: it waits for its dependents to go.
    WaitingForDependents,
    /// Not found, or an object of that name with another uid.
    Absent,
}

/// What to do with a dependent, given its owners.
#[derive(Clone, Debug, PartialEq)]
pub enum DependentDecision {
    /// A solid owner keeps it, and its references need no change.
    Keep,
    /// A solid owner keeps it; its references lose the dangling owners and no longer block
    /// owners waiting for their dependents.
    SetOwnerReferences(Vec<OwnerReference>),
    /// No owner keeps it: delete it with this propagation policy.
    Delete(PropagationPolicy),
}

/// The state of the owner `r` names, given what the API returned for its name.
pub fn owner_state_of(r: &OwnerReference, found: Option<&ObjectMeta>) -> OwnerState {
    let Some(m) = found else {
        return OwnerState::Absent;
    };
    if m.uid.as_deref() != Some(r.uid.as_str()) {
        return OwnerState::Absent;
    }
    let foreground = m
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FOREGROUND_FINALIZER);
    if m.deletion_timestamp.is_some() && foreground {
        OwnerState::WaitingForDependents
    } else {
        OwnerState::Solid
    }
}

/// Kubernetes' `attemptToDeleteItem`: a dependent with a solid owner stays (dangling
/// references are removed, references to waiting owners stop blocking them); one without
/// is deleted — in the foreground when an owner waits for it and it has dependents of its
/// own, else with the policy its own pending finalizers ask for, else in the background.
pub fn decide_dependent(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    finalizers: &[String],
) -> DependentDecision {
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        let mut changed = false;
        let mut refs = Vec::with_capacity(owners.len());
        for (r, s) in owners {
            match s {
                OwnerState::Absent => changed = true,
                OwnerState::WaitingForDependents if r.block_owner_deletion == Some(true) => {
                    let mut r = r.clone();
                    r.block_owner_deletion = Some(false);
                    refs.push(r);
                    changed = true;
                }
                _ => refs.push(r.clone()),
            }
        }
        return if changed {
            DependentDecision::SetOwnerReferences(refs)
        } else {
            DependentDecision::Keep
        };
    }
    if owners.is_empty() {
        return DependentDecision::Keep;
    }
    if waiting && has_dependents {
        return DependentDecision::Delete(PropagationPolicy::Foreground);
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if has(FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    DependentDecision::Delete(policy)
}

/// How many of an owner's dependents (given by their reference to it) still block its
/// foreground deletion.
pub fn foreground_blockers<'a>(refs: impl IntoIterator<Item = &'a OwnerReference>) -> usize {
    refs.into_iter()
        .filter(|r| r.block_owner_deletion == Some(true))
        .count()
}

/// `refs` without the reference to `owner_uid`, or None when there is none to remove.
pub fn without_owner(refs: &[OwnerReference], owner_uid: &str) -> Option<Vec<OwnerReference>> {
    if !refs.iter().any(|r| r.uid == owner_uid) {
        return None;
    }
    Some(
        refs.iter()
            .filter(|r| r.uid != owner_uid)
            .cloned()
            .collect(),
    )
}

/// `refs` with no reference blocking its owner's deletion, or None when none did.
pub fn unblocked(refs: &[OwnerReference]) -> Option<Vec<OwnerReference>> {
    if !refs.iter().any(|r| r.block_owner_deletion == Some(true)) {
        return None;
    }
    Some(
        refs.iter()
            .map(|r| OwnerReference {
                block_owner_deletion: r.block_owner_deletion.map(|_| false),
                ..r.clone()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn oref(uid: &str, block: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block,
            controller: None,
        }
    }

    fn meta(uid: &str, deleting: bool, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            deletion_timestamp: deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn owner_state_follows_the_uid_and_the_foreground_finalizer() {
        let r = oref("a", None);
        assert_eq!(owner_state_of(&r, None), OwnerState::Absent);
        assert_eq!(
            owner_state_of(&r, Some(&meta("b", false, &[]))),
            OwnerState::Absent
        );
        assert_eq!(
            owner_state_of(&r, Some(&meta("a", false, &[]))),
            OwnerState::Solid
        );
        // Deleting, but not in the foreground: still an owner (e.g. orphan or finalizers).
        assert_eq!(
            owner_state_of(&r, Some(&meta("a", true, &["orphan"]))),
            OwnerState::Solid
        );
        assert_eq!(
            owner_state_of(&r, Some(&meta("a", true, &[FOREGROUND_FINALIZER]))),
            OwnerState::WaitingForDependents
        );
        // The finalizer alone, without a deletion timestamp, is not a deletion.
        assert_eq!(
            owner_state_of(&r, Some(&meta("a", false, &[FOREGROUND_FINALIZER]))),
            OwnerState::Solid
        );
    }

    #[test]
    fn all_owners_gone_means_background_deletion() {
        let owners = vec![
            (oref("a", None), OwnerState::Absent),
            (oref("b", Some(true)), OwnerState::Absent),
        ];
        assert_eq!(
            decide_dependent(&owners, true, &[]),
            DependentDecision::Delete(PropagationPolicy::Background)
        );
    }

    #[test]
    fn a_solid_owner_keeps_the_dependent() {
        let owners = vec![(oref("a", None), OwnerState::Solid)];
        assert_eq!(
            decide_dependent(&owners, false, &[]),
            DependentDecision::Keep
        );
        assert_eq!(decide_dependent(&[], false, &[]), DependentDecision::Keep);
    }

    #[test]
    fn a_solid_owner_keeps_it_but_dangling_references_go_and_waiting_ones_unblock() {
        let owners = vec![
            (oref("a", None), OwnerState::Solid),
            (oref("b", None), OwnerState::Absent),
            (oref("c", Some(true)), OwnerState::WaitingForDependents),
        ];
        let DependentDecision::SetOwnerReferences(refs) = decide_dependent(&owners, false, &[])
        else {
            panic!("expected new references");
        };
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].uid, "a");
        assert_eq!(refs[1].uid, "c");
        assert_eq!(refs[1].block_owner_deletion, Some(false));
        // Already unblocked: nothing more to change.
        let owners = vec![
            (oref("a", None), OwnerState::Solid),
            (oref("c", Some(false)), OwnerState::WaitingForDependents),
        ];
        assert_eq!(
            decide_dependent(&owners, false, &[]),
            DependentDecision::Keep
        );
    }

    #[test]
    fn a_waiting_owner_deletes_dependents_with_children_in_the_foreground() {
        let owners = vec![(oref("a", Some(true)), OwnerState::WaitingForDependents)];
        assert_eq!(
            decide_dependent(&owners, true, &[]),
            DependentDecision::Delete(PropagationPolicy::Foreground)
        );
        assert_eq!(
            decide_dependent(&owners, false, &[]),
            DependentDecision::Delete(PropagationPolicy::Background)
        );
    }

    #[test]
    fn the_dependents_own_finalizers_choose_the_policy() {
        let owners = vec![(oref("a", None), OwnerState::Absent)];
        assert_eq!(
            decide_dependent(&owners, true, &[ORPHAN_FINALIZER.into()]),
            DependentDecision::Delete(PropagationPolicy::Orphan)
        );
        assert_eq!(
            decide_dependent(&owners, true, &[FOREGROUND_FINALIZER.into()]),
            DependentDecision::Delete(PropagationPolicy::Foreground)
        );
    }

    #[test]
    fn blockers_count_only_blocking_references() {
        let refs = [
            oref("a", Some(true)),
            oref("a", None),
            oref("a", Some(false)),
        ];
        assert_eq!(foreground_blockers(refs.iter()), 1);
    }

    #[test]
    fn without_owner_drops_only_that_reference() {
        let refs = vec![oref("a", None), oref("b", None)];
        let kept = without_owner(&refs, "a").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].uid, "b");
        assert!(without_owner(&refs, "z").is_none());
    }

    #[test]
    fn unblocked_clears_only_set_flags() {
        let refs = vec![oref("a", Some(true)), oref("b", None)];
        let out = unblocked(&refs).unwrap();
        assert_eq!(out[0].block_owner_deletion, Some(false));
        assert_eq!(out[1].block_owner_deletion, None);
        assert!(unblocked(&out).is_none());
    }
}
