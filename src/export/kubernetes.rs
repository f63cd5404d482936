//! `guardian export kubernetes`: one YAML stream with a Deployment per long-running service,
//! a Job per task, a Service per port. The objects are `k8s-openapi`'s own types (field names
//! right by construction), serialized by `serde_yaml_ng`; what Kubernetes cannot express is a
//! comment above the object. Pure: the config in, text out.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, ExecAction, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Service, ServicePort, ServiceSpec as K8sService,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::lost;
use crate::config::{CheckSpec, Condition, Config, RestartPolicy, ServiceSpec, Vars, expand};

/// What the command line adds.
pub struct Options<'a> {
    pub image: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "`services.{0}.image`: no container image for `{0}`\n  1. pass --image IMAGE for every service\n  2. or set image = \"…\" on the service"
    )]
    NoImage(String),
    #[error("cannot write the YAML: {0}")]
    Yaml(String),
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "guardian-export".to_owned(),
        ),
    ])
}

/// Object and container names are DNS labels: `_` becomes `-`.
fn k8s_name(name: &str) -> String {
    name.replace('_', "-")
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(k8s_name(name)),
        namespace: ns.map(str::to_owned),
        labels: Some(labels(name)),
        ..ObjectMeta::default()
    }
}

fn secs(d: std::time::Duration) -> i32 {
    d.as_secs_f64().ceil().max(1.0).min(f64::from(i32::MAX)) as i32
}

/// One probe from a check: tcp → tcpSocket, http → httpGet, exec → exec.
fn probe(s: &ServiceSpec, check: &CheckSpec, vars: &Vars) -> Probe {
    let port = s.nominal_port().map(|p| IntOrString::Int(i32::from(p)));
    let h = &s.health;
    let mut p = Probe {
        period_seconds: Some(secs(h.interval)),
        timeout_seconds: Some(secs(h.timeout)),
        failure_threshold: Some(h.unhealthy_threshold.max(1) as i32),
        ..Probe::default()
    };
    match check {
        CheckSpec::Tcp {} => {
            p.tcp_socket = Some(TCPSocketAction {
                port: port.unwrap_or(IntOrString::Int(0)),
                ..TCPSocketAction::default()
            });
        }
        CheckSpec::Http { path, .. } => {
            p.http_get = Some(HTTPGetAction {
                path: Some(path.clone()),
                port: port.unwrap_or(IntOrString::Int(0)),
                ..HTTPGetAction::default()
            });
        }
        CheckSpec::Exec { command } => {
            p.exec = Some(ExecAction {
                command: Some(
                    command
                        .iter()
                        .map(|a| expand(a, vars).unwrap_or_else(|_| a.clone()))
                        .collect(),
                ),
            });
        }
    }
    p
}

fn container(s: &ServiceSpec, image: &str) -> (Container, Vec<String>) {
    let mut notes = Vec::new();
    let vars = Vars {
        name: s.name.to_string(),
        replica: 1,
        host: "0.0.0.0".to_owned(),
        port: s.nominal_port(),
        state_dir: "/tmp".to_owned(),
        pidfile: Some(format!("/tmp/{}.pid", s.name)),
    };
    if s.replicas > 1
        && s.command
            .iter()
            .chain(s.env.values())
            .any(|a| a.contains("{replica}"))
    {
        notes.push("{replica} is 1 in every pod: pods of a Deployment are alike".to_owned());
    }
    let args: Vec<String> = s
        .command
        .iter()
        .map(|a| expand(a, &vars).unwrap_or_else(|_| a.clone()))
        .collect();
    let mut env: Vec<EnvVar> = s
        .env_from_files
        .iter()
        .filter(|(k, _)| !s.env.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            s.env
                .iter()
                .map(|(k, v)| (k.clone(), expand(v, &vars).unwrap_or_else(|_| v.clone()))),
        )
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..EnvVar::default()
        })
        .collect();
    env.sort_by(|a, b| a.name.cmp(&b.name));
    let h = &s.health;
    let mut checks = h.checks.iter();
    let liveness = checks.next().map(|c| probe(s, c, &vars));
    let extra: Vec<String> = checks
        .map(|c| super::systemd::describe_check(c, s.nominal_port()))
        .collect();
    if !extra.is_empty() {
        notes.push(format!(
            "one probe per kind in Kubernetes; also checked by guardian: {}",
            extra.join("; ")
        ));
    }
    // Ready: the port accepts (as guardian decides it), else the first check.
    let readiness = match s.nominal_port() {
        Some(p) => Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(p)),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(secs(h.interval.min(std::time::Duration::from_secs(10)))),
            ..Probe::default()
        }),
        None => liveness.clone(),
    };
    let startup = readiness.clone().map(|r| Probe {
        period_seconds: Some(1),
        failure_threshold: Some(secs(s.startup_timeout)),
        ..r
    });
    let r = &h.resources;
    let mut limits = BTreeMap::new();
    if let Some(t) = r.memory_mb {
        limits.insert(
            "memory".to_owned(),
            Quantity(format!("{}Mi", t.critical.ceil() as u64)),
        );
    }
    if let Some(t) = r.cpu_percent {
        limits.insert(
            "cpu".to_owned(),
            Quantity(format!("{}m", (t.critical * 10.0).ceil() as u64)),
        );
    }
    if !s.limits.is_empty() {
        notes.push("limits (nofile, nproc, …) are the node's and the runtime's in Kubernetes; set them there".to_owned());
    }
    if s.stop_signal != nix::sys::signal::Signal::SIGTERM {
        notes.push(format!(
            "stop_signal {}: Kubernetes sends SIGTERM; make the image's STOPSIGNAL {} or add a preStop hook",
            s.stop_signal.as_str(),
            s.stop_signal.as_str()
        ));
    }
    let c = Container {
        name: k8s_name(s.name.as_str()),
        image: Some(image.to_owned()),
        command: Some(args),
        working_dir: s
            .cwd
            .as_ref()
            .filter(|c| c.is_absolute())
            .map(|c| c.display().to_string()),
        env: (!env.is_empty()).then_some(env),
        ports: s.nominal_port().map(|p| {
            vec![ContainerPort {
                container_port: i32::from(p),
                name: Some("main".to_owned()),
                ..ContainerPort::default()
            }]
        }),
        liveness_probe: liveness,
        readiness_probe: readiness,
        startup_probe: startup,
        resources: (!limits.is_empty()).then(|| ResourceRequirements {
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    };
    (c, notes)
}

/// An init container per dependency: it waits for the dependency's Service port, or for its
/// Job to complete.
fn waits(config: &Config, s: &ServiceSpec) -> (Vec<Container>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (dep, d) in &s.depends_on {
        let Some(target) = config.services.get(dep) else {
            continue;
        };
        let (image, script) = if d.condition == Condition::Completed {
            notes.push(format!(
                "waiting for job/{dep} needs a service account allowed to get jobs (kubectl wait)"
            ));
            (
                "bitnami/kubectl:latest",
                format!(
                    "kubectl wait --for=condition=complete job/{} --timeout=1h",
                    k8s_name(dep.as_str())
                ),
            )
        } else if let Some(port) = target.nominal_port() {
            (
                "busybox:1.36",
                format!(
                    "until nc -z {0} {port}; do echo waiting for {0}; sleep 1; done",
                    k8s_name(dep.as_str())
                ),
            )
        } else {
            notes.push(format!(
                "depends_on.{dep}: {dep} has no port to wait for; Kubernetes starts both at once"
            ));
            continue;
        };
        out.push(Container {
            name: format!("wait-for-{}", k8s_name(dep.as_str())),
            image: Some(image.to_owned()),
            command: Some(vec!["sh".into(), "-c".into(), script]),
            ..Container::default()
        });
    }
    (out, notes)
}

fn pod(
    config: &Config,
    s: &ServiceSpec,
    image: &str,
    restart: &str,
) -> (PodTemplateSpec, Vec<String>) {
    let (main, mut notes) = container(s, image);
    let (init, more) = waits(config, s);
    notes.extend(more);
    let security = (s.uid.is_some() || s.gid.is_some()).then(|| PodSecurityContext {
        run_as_user: s.uid.map(i64::from),
        run_as_group: s.gid.map(i64::from),
        ..PodSecurityContext::default()
    });
    let spec = PodSpec {
        containers: vec![main],
        init_containers: (!init.is_empty()).then_some(init),
        restart_policy: Some(restart.to_owned()),
        termination_grace_period_seconds: Some(i64::from(secs(s.shutdown_timeout))),
        security_context: security,
        ..PodSpec::default()
    };
    (
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(s.name.as_str())),
                ..ObjectMeta::default()
            }),
            spec: Some(spec),
        },
        notes,
    )
}

fn document<T: serde::Serialize>(
    out: &mut String,
    comments: &[String],
    obj: &T,
) -> Result<(), KubeError> {
    out.push_str("---\n");
    for c in comments {
        let _ = writeln!(out, "# {c}");
    }
    out.push_str(&serde_yaml_ng::to_string(obj).map_err(|e| KubeError::Yaml(e.to_string()))?);
    Ok(())
}

/// The whole stream, in service-name order.
pub fn export(config: &Config, opts: &Options<'_>) -> Result<String, KubeError> {
    let mut out = format!(
        "# Exported by guardian {} from guardian.toml: guardian export kubernetes\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, s) in &config.services {
        let image = s
            .image
            .as_deref()
            .or(opts.image)
            .ok_or_else(|| KubeError::NoImage(name.to_string()))?;
        let mut comments = vec![format!("service `{name}`")];
        comments.extend(lost(s));
        if s.essential {
            comments.push("essential = true: here each service is its own workload, and Kubernetes restarts a container that ends; guardian's essential exit applies when guardian is a pod's entry point".to_owned());
        }
        if let Some(w) = s.watchdog {
            comments.push(format!(
                "watchdog = {}: Kubernetes has no sd_notify; a livenessProbe is the nearest (kept by guardian only)",
                crate::config::duration::Secs(w)
            ));
        }
        let ns = opts.namespace;
        let selector = LabelSelector {
            match_labels: Some(labels(name.as_str())),
            ..LabelSelector::default()
        };
        if s.restart == RestartPolicy::Always {
            let (template, notes) = pod(config, s, image, "Always");
            comments.extend(notes);
            let d = Deployment {
                metadata: meta(name.as_str(), ns),
                spec: Some(DeploymentSpec {
                    replicas: Some(s.replicas as i32),
                    selector,
                    template,
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            };
            document(&mut out, &comments, &d)?;
        } else {
            let restart = if s.restart == RestartPolicy::No {
                "Never"
            } else {
                "OnFailure"
            };
            let (template, notes) = pod(config, s, image, restart);
            comments.extend(notes);
            let backoff = if s.restart == RestartPolicy::No {
                0
            } else {
                s.backoff.max_retries as i32
            };
            let j = Job {
                metadata: meta(name.as_str(), ns),
                spec: Some(JobSpec {
                    backoff_limit: Some(backoff),
                    completions: Some(s.replicas as i32),
                    parallelism: Some(s.replicas as i32),
                    template,
                    ..JobSpec::default()
                }),
                ..Job::default()
            };
            document(&mut out, &comments, &j)?;
        }
        if let Some(port) = s.nominal_port() {
            let svc = Service {
                metadata: meta(name.as_str(), ns),
                spec: Some(K8sService {
                    selector: Some(labels(name.as_str())),
                    ports: Some(vec![ServicePort {
                        name: Some("main".to_owned()),
                        port: i32::from(port),
                        target_port: Some(IntOrString::String("main".to_owned())),
                        ..ServicePort::default()
                    }]),
                    ..K8sService::default()
                }),
                ..Service::default()
            };
            document(
                &mut out,
                &[format!("the port of `{name}`, reached by its name")],
                &svc,
            )?;
        }
    }
    Ok(out)
}
