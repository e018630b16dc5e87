//! ALUA target port groups as ceph-iscsi lays them out for gateways that
//! export one image: one group per gateway's TPG (its id is the TPG tag),
//! the owner's `ao` (active/optimized), every other `ano<tag>`
//! (active/non-optimized), transitions implicit. The access states never
//! change: which gateway writes is decided by the image's lock, and the
//! initiator's multipath prefers the owner's path while it is up.

/// The groups of one gateway's backstore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAlua {
    /// The TPG tags of every gateway exporting the image, the owner's
    /// first; this gateway's own tag must be among them.
    pub gateways: Vec<u16>,
    /// How long an implicit transition may take, in seconds (reported to
    /// initiators; multipath waits that long before giving up on a path
    /// in transition).
    pub implicit_transition_secs: u32,
}

/// One target port group to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayGroup {
    /// Its directory name under the backstore's `alua/`.
    pub name: String,
    /// `tg_pt_gp_id`: the TPG tag of the gateway it stands for.
    pub id: u16,
    /// `alua_access_state`: 0 active/optimized, 1 active/non-optimized.
    pub state: u8,
}

impl GatewayAlua {
    /// Refuse an empty list, tag 0, a tag listed twice, or a list without
    /// `own_tag`; the error is one line.
    pub fn validate(&self, own_tag: u16) -> Result<(), String> {
        if self.gateways.is_empty() {
            return Err("the ALUA gateway list is empty".into());
        }
        for (i, tag) in self.gateways.iter().enumerate() {
            if *tag == 0 {
                return Err("ALUA gateway TPG tags start at 1".into());
            }
            if self.gateways[..i].contains(tag) {
                return Err(format!("TPG tag {tag} is listed twice for ALUA"));
            }
        }
        if !self.gateways.contains(&own_tag) {
            return Err(format!(
                "this gateway's TPG tag {own_tag} is not among the ALUA gateways {:?}",
                self.gateways
            ));
        }
        Ok(())
    }

    /// The groups, the owner's first.
    pub fn groups(&self) -> Vec<GatewayGroup> {
        self.gateways
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                if i == 0 {
                    GatewayGroup {
                        name: "ao".into(),
                        id,
                        state: 0,
                    }
                } else {
                    GatewayGroup {
                        name: format!("ano{id}"),
                        id,
                        state: 1,
                    }
                }
            })
            .collect()
    }

    /// The name of the group of the gateway with TPG tag `tag`.
    pub fn group_of(&self, tag: u16) -> Option<String> {
        self.groups()
            .into_iter()
            .find(|g| g.id == tag)
            .map(|g| g.name)
    }

    /// The attributes written to `group` after its id, in order: the
    /// access type first (the kernel takes a state only for a group with
    /// implicit transitions), the state last.
    pub(crate) fn attributes(&self, group: &GatewayGroup) -> Vec<(&'static str, String)> {
        vec![
            ("alua_access_type", "1".into()),
            ("alua_support_active_optimized", "1".into()),
            ("alua_support_active_nonoptimized", "1".into()),
            ("alua_support_transitioning", "1".into()),
            ("alua_support_offline", "0".into()),
            ("alua_support_unavailable", "0".into()),
            // The kernel would delay every command of an ANO path by
            // 100 ms by default.
            ("nonop_delay_msecs", "0".into()),
            (
                "implicit_trans_secs",
                self.implicit_transition_secs.to_string(),
            ),
            ("alua_access_state", group.state.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alua(gateways: &[u16]) -> GatewayAlua {
        GatewayAlua {
            gateways: gateways.to_vec(),
            implicit_transition_secs: 30,
        }
    }

    #[test]
    fn the_owner_is_ao_and_the_others_ano() {
        let a = alua(&[2, 1, 7]);
        let names: Vec<_> = a
            .groups()
            .into_iter()
            .map(|g| (g.name, g.id, g.state))
            .collect();
        assert_eq!(
            names,
            [
                ("ao".to_string(), 2, 0),
                ("ano1".to_string(), 1, 1),
                ("ano7".to_string(), 7, 1)
            ]
        );
        assert_eq!(a.group_of(7).as_deref(), Some("ano7"));
        assert_eq!(a.group_of(2).as_deref(), Some("ao"));
        assert_eq!(a.group_of(3), None);
        let attrs = a.attributes(&a.groups()[1]);
        assert_eq!(attrs[0], ("alua_access_type", "1".to_string()));
        assert_eq!(
            attrs.last().unwrap(),
            &("alua_access_state", "1".to_string())
        );
    }

    #[test]
    fn bad_lists_are_refused_in_one_line() {
        assert_eq!(alua(&[1, 2]).validate(2), Ok(()));
        for (list, own, why) in [
            (&[][..], 1, "empty"),
            (&[0, 1][..], 1, "start at 1"),
            (&[1, 2, 1][..], 1, "twice"),
            (&[1, 2][..], 3, "not among"),
        ] {
            let err = alua(list).validate(own).unwrap_err();
            assert!(err.contains(why) && !err.contains('\n'), "{list:?}: {err}");
        }
    }
}
