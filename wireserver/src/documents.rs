//! The XML documents of the wire protocol, written with quick-xml.
//!
//! Only what WALinuxAgent reads is filled in: the goal state's incarnation,
//! container id, role instance id, configuration name and links; the
//! hosting environment's instance, role and deployment names; the shared
//! configuration (kept, not parsed, by the agent); the certificates'
//! format and data; an extensions configuration with no extensions and a
//! status upload target. The shapes follow the payloads in WALinuxAgent's
//! test data (`tests/data/wire/`).

use crate::{GoalState, PROTOCOL_VERSION};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use std::io;

/// The links a goal state carries, all under the VM's endpoint.
#[derive(Clone, Debug)]
pub struct Links {
    /// `http://127.0.0.1:PORT`, as the agent reaches this server.
    pub base: String,
}

impl Links {
    fn config(&self, goal: &GoalState, kind: &str) -> String {
        format!(
            "{}/machine/{}/{}?comp=config&type={kind}&incarnation={}",
            self.base, goal.container_id, goal.instance_id, goal.incarnation
        )
    }

    fn certificates(&self, goal: &GoalState) -> String {
        format!(
            "{}/machine/{}/{}?comp=certificates&incarnation={}",
            self.base, goal.container_id, goal.instance_id, goal.incarnation
        )
    }

    /// Where the agent uploads its status blob.
    pub fn status(&self, goal: &GoalState) -> String {
        format!("{}/machine/{}/status", self.base, goal.container_id)
    }
}

/// A document in full: the declaration, then what `body` writes.
fn document(body: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let written = w
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .and_then(|()| body(&mut w));
    // Writing into a Vec cannot fail; a failure here is a bug.
    written.expect("XML into memory");
    String::from_utf8(w.into_inner()).expect("quick-xml writes UTF-8")
}

fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))
        .map(drop)
}

/// `GET /?comp=versions`.
pub fn versions() -> String {
    document(|w| {
        w.create_element("Versions")
            .write_inner_content(|w| {
                w.create_element("Preferred")
                    .write_inner_content(|w| text(w, "Version", PROTOCOL_VERSION))?;
                w.create_element("Supported")
                    .write_inner_content(|w| text(w, "Version", PROTOCOL_VERSION))?;
                Ok(())
            })
            .map(drop)
    })
}

/// `GET /machine/?comp=goalstate`.
pub fn goal_state(goal: &GoalState, links: &Links) -> String {
    let incarnation = goal.incarnation.to_string();
    document(|w| {
        w.create_element("GoalState")
            .write_inner_content(|w| {
                text(w, "Version", PROTOCOL_VERSION)?;
                text(w, "Incarnation", &incarnation)?;
                w.create_element("Machine").write_inner_content(|w| {
                    text(w, "ExpectedState", "Started")?;
                    text(w, "StopRolesDeadlineHint", "300000")?;
                    text(w, "ExpectHealthReport", "FALSE")
                })?;
                w.create_element("Container").write_inner_content(|w| {
                    text(w, "ContainerId", &goal.container_id)?;
                    w.create_element("RoleInstanceList")
                        .write_inner_content(|w| {
                            w.create_element("RoleInstance").write_inner_content(|w| {
                                text(w, "InstanceId", &goal.instance_id)?;
                                text(w, "State", "Started")?;
                                w.create_element("Configuration").write_inner_content(|w| {
                                    for (element, kind) in [
                                        ("HostingEnvironmentConfig", "hostingEnvironmentConfig"),
                                        ("SharedConfig", "sharedConfig"),
                                        ("ExtensionsConfig", "extensionsConfig"),
                                    ] {
                                        text(w, element, &links.config(goal, kind))?;
                                    }
                                    if goal.has_certificates {
                                        text(w, "Certificates", &links.certificates(goal))?;
                                    }
                                    text(
                                        w,
                                        "ConfigName",
                                        &format!("{}.{}.xml", goal.instance_id, goal.incarnation),
                                    )
                                })?;
                                Ok(())
                            })?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
                Ok(())
            })
            .map(drop)
    })
}

/// The deployment, incarnation and role elements the hosting environment
/// and the shared configuration both carry.
fn placement(w: &mut Writer<Vec<u8>>, goal: &GoalState) -> io::Result<()> {
    let incarnation = goal.incarnation.to_string();
    w.create_element("Deployment")
        .with_attribute(("name", goal.deployment.as_str()))
        .with_attribute(("incarnation", "0"))
        .write_inner_content(|w| {
            w.create_element("Service")
                .with_attribute(("name", goal.deployment.as_str()))
                .write_empty()?;
            Ok(())
        })?;
    w.create_element("Incarnation")
        .with_attribute(("number", incarnation.as_str()))
        .with_attribute(("instance", goal.instance_id.as_str()))
        .write_empty()?;
    w.create_element("Role")
        .with_attribute(("name", goal.role.as_str()))
        .with_attribute(("settleTimeSeconds", "0"))
        .write_empty()?;
    Ok(())
}

/// `comp=config&type=hostingEnvironmentConfig`.
pub fn hosting_environment(goal: &GoalState) -> String {
    let incarnation = goal.incarnation.to_string();
    document(|w| {
        w.create_element("HostingEnvironmentConfig")
            .with_attribute(("version", "1.0.0.0"))
            .with_attribute(("goalStateIncarnation", incarnation.as_str()))
            .write_inner_content(|w| placement(w, goal))
            .map(drop)
    })
}

/// `comp=config&type=sharedConfig`.
pub fn shared_config(goal: &GoalState) -> String {
    let incarnation = goal.incarnation.to_string();
    document(|w| {
        w.create_element("SharedConfig")
            .with_attribute(("version", "1.0.0.0"))
            .with_attribute(("goalStateIncarnation", incarnation.as_str()))
            .write_inner_content(|w| {
                placement(w, goal)?;
                w.create_element("Instances").write_inner_content(|w| {
                    w.create_element("Instance")
                        .with_attribute(("id", goal.instance_id.as_str()))
                        .with_attribute(("address", "127.0.0.1"))
                        .write_empty()?;
                    Ok(())
                })?;
                Ok(())
            })
            .map(drop)
    })
}

/// `comp=config&type=extensionsConfig`: no extensions and no agent
/// families (Fabric updates no guest agent), only where to upload status.
pub fn extensions_config(goal: &GoalState, links: &Links) -> String {
    let incarnation = goal.incarnation.to_string();
    let status = links.status(goal);
    document(|w| {
        w.create_element("Extensions")
            .with_attribute(("version", "1.0.0.0"))
            .with_attribute(("goalStateIncarnation", incarnation.as_str()))
            .write_inner_content(|w| {
                w.create_element("GuestAgentExtension")
                    .write_inner_content(|w| {
                        w.create_element("GAFamilies").write_empty()?;
                        Ok(())
                    })?;
                w.create_element("Plugins").write_empty()?;
                w.create_element("PluginSettings").write_empty()?;
                w.create_element("StatusUploadBlob")
                    .with_attribute(("statusBlobType", "BlockBlob"))
                    .write_text_content(BytesText::new(&status))?;
                w.create_element("InVMGoalStateMetaData")
                    .with_attribute(("inSvdSeqNo", incarnation.as_str()))
                    .write_empty()?;
                Ok(())
            })
            .map(drop)
    })
}

/// `comp=certificates`: the enveloped PKCS#12, base64.
pub fn certificates(goal: &GoalState, data_base64: &str) -> String {
    let incarnation = goal.incarnation.to_string();
    document(|w| {
        w.create_element("CertificateFile")
            .write_inner_content(|w| {
                text(w, "Version", PROTOCOL_VERSION)?;
                text(w, "Incarnation", &incarnation)?;
                text(w, "Format", "Pkcs7BlobWithPfxContents")?;
                text(w, "Data", data_base64)
            })
            .map(drop)
    })
}

/// The `<State>` of a health report (`POST /machine?comp=health`), e.g.
/// `Ready` or `NotReady`; `None` if the document has none or is not XML.
pub fn health_state(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_state = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => in_state = e.name().as_ref() == b"State",
            Event::Text(t) if in_state => {
                return Some(t.decode().ok()?.trim().to_owned());
            }
            Event::End(_) => in_state = false,
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal() -> GoalState {
        GoalState {
            incarnation: 3,
            container_id: "c0ffee".into(),
            deployment: "web".into(),
            role: "frontend".into(),
            instance_id: "web.frontend.0".into(),
            has_certificates: true,
        }
    }

    #[test]
    fn the_goal_state_links_every_document_of_its_incarnation() {
        let links = Links {
            base: "http://127.0.0.1:1".into(),
        };
        let xml = goal_state(&goal(), &links);
        assert!(xml.contains("<Incarnation>3</Incarnation>"), "{xml}");
        assert!(xml.contains("<ContainerId>c0ffee</ContainerId>"), "{xml}");
        assert!(
            xml.contains("<InstanceId>web.frontend.0</InstanceId>"),
            "{xml}"
        );
        for kind in [
            "hostingEnvironmentConfig",
            "sharedConfig",
            "extensionsConfig",
        ] {
            assert!(
                xml.contains(&format!("type={kind}&amp;incarnation=3")),
                "{kind}: {xml}"
            );
        }
        assert!(
            xml.contains("?comp=certificates&amp;incarnation=3"),
            "{xml}"
        );
        // Without certificates there is no link to them.
        let bare = GoalState {
            has_certificates: false,
            ..goal()
        };
        assert!(!goal_state(&bare, &links).contains("comp=certificates"));
    }

    #[test]
    fn names_are_escaped_not_pasted() {
        let g = GoalState {
            deployment: "a\"<b>".into(),
            ..goal()
        };
        let xml = hosting_environment(&g);
        assert!(xml.contains("name=\"a&quot;&lt;b&gt;\""), "{xml}");
    }

    #[test]
    fn a_health_report_state_is_read() {
        let xml = "<?xml version=\"1.0\"?><Health><GoalStateIncarnation>1</GoalStateIncarnation>\
                   <Container><RoleInstanceList><Role><InstanceId>x</InstanceId><Health>\
                   <State>Ready</State></Health></Role></RoleInstanceList></Container></Health>";
        assert_eq!(health_state(xml).as_deref(), Some("Ready"));
        assert_eq!(health_state("<Health/>"), None);
        assert_eq!(health_state("not xml <"), None);
    }
}
