//! Modules with the `workspace` permission reach the developer's own
//! cluster, however its tool published it, with TLS verified.
//!
//! The clusters are stand-ins (`examples/modules/kubectl/apiserver.py`)
//! serving TLS from a test CA with the names each tool's certificates
//! carry, published the way each tool publishes them, with the tools'
//! labels. The module calls them with Debian's kubectl, which verifies TLS
//! and sends the kubeconfig's credentials. Only networks and containers
//! named here are made or removed: a developer's real `kind` network is
//! never touched.

use forklet_state::api::ModulePhase;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use forkletd::testing::{Harness, KUBECTL_IMAGE, ModuleYaml, WORKSPACE, build_kubectl_image};
use serde_json::{Value, json};

/// A CA and the certificates it issues, in a directory a container's
/// non-root user can read.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let pki = Self { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=forklet-test-ca",
        ]);
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `NAME.crt` and `NAME.key`, signed by the CA, with `sans`
    /// (`DNS:a,IP:1.2.3.4`; empty for a client certificate), readable by all.
    fn issue(&self, name: &str, subject: &str, sans: &str) {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ]);
        let ext = format!("{name}.ext");
        let extensions = match sans {
            "" => "extendedKeyUsage=clientAuth\n".to_owned(),
            sans => format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"),
        };
        std::fs::write(self.path(&ext), extensions).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        for file in [&key, &crt] {
            std::fs::set_permissions(
                self.path(file),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .unwrap();
        }
    }

    fn b64(&self, file: &str) -> String {
        STANDARD.encode(self.read(file))
    }
}

/// The credentials a kubeconfig carries.
enum User<'a> {
    Token(&'a str),
    /// The client certificate `client.crt` of this PKI.
    Certificate(&'a Pki),
}

fn kubeconfig(server: &str, ca: &Pki, user: User<'_>) -> String {
    let user = match user {
        User::Token(token) => format!("{{token: {token}}}"),
        User::Certificate(pki) => format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            pki.b64("client.crt"),
            pki.b64("client.key")
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster: {{server: '{server}', certificate-authority-data: {}}}\ncontexts:\n- name: dev\n  context: {{cluster: dev, user: dev}}\nusers:\n- name: dev\n  user: {user}\n",
        ca.b64("ca.crt")
    )
}

/// A name no one else uses, for this test's Docker objects.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "forklet-test-{prefix}-{:x}{:x}{}",
        std::process::id(),
        nanos & 0xfff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The Docker objects a test made, removed when it ends, whatever happened.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Made {
    fn network(&mut self, name: &str) {
        docker(&["network", "create", name]);
        self.networks.push(name.to_owned());
    }

    /// A stand-in API server in a container on `network`; `extra` are more
    /// `docker run` arguments (labels, published ports, environment).
    fn api_server(&mut self, name: &str, network: &str, pki: &Pki, extra: &[&str]) {
        let certs = format!("{}:/certs:ro", pki.dir.path().display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "-v",
            &certs,
            "-e",
            "CERT=/certs/server.crt",
            "-e",
            "KEY=/certs/server.key",
            "-e",
            "CLIENT_CA=/certs/ca.crt",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--entrypoint",
            "/usr/bin/python3",
            KUBECTL_IMAGE,
            "/opt/module/apiserver.py",
        ]);
        self.containers.push(name.to_owned());
        docker(&args);
    }

    /// A kind-shaped cluster `cluster` on network `cluster`: its node
    /// `CLUSTER-control-plane` labelled as kind labels it, publishing 6443 on
    /// `127.0.0.1` at a free port, with a certificate naming the node,
    /// `localhost` and `127.0.0.1`, and a client certificate; answering
    /// `version`. The PKI and the published port.
    fn kind(&mut self, cluster: &str, version: &str) -> (Pki, u16) {
        let node = format!("{cluster}-control-plane");
        let pki = Pki::new();
        pki.issue(
            "server",
            "/CN=kube-apiserver",
            &format!("DNS:{node},DNS:localhost,IP:127.0.0.1"),
        );
        pki.issue("client", "/O=system:masters/CN=kubernetes-admin", "");
        let label = format!("io.x-k8s.kind.cluster={cluster}");
        let version = format!("GIT_VERSION={version}");
        self.api_server(
            &node,
            cluster,
            &pki,
            &["--label", &label, "-p", "127.0.0.1::6443", "-e", &version],
        );
        let port = published_port(&node, "6443/tcp");
        (pki, port)
    }

    fn remove_container(&mut self, name: &str) {
        docker(&["rm", "-f", name]);
        self.containers.retain(|c| c != name);
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        for network in &self.networks {
            let _ = Command::new("docker")
                .args(["network", "rm", network])
                .output();
        }
    }
}

/// A stand-in API server as a process on this machine, not in a container.
struct HostServer {
    child: Child,
    port: u16,
}

impl HostServer {
    fn start(host: &str, pki: &Pki, token: &str) -> Self {
        let port = std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .arg(forkletd::testing::repo_root().join("examples/modules/kubectl/apiserver.py"))
            .env("HOST", host)
            .env("API_PORT", port.to_string())
            .env("CERT", pki.path("server.crt"))
            .env("KEY", pki.path("server.key"))
            .env("TOKEN", token)
            .env("GIT_VERSION", "v1.31.0-host")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let server = Self { child, port };
        let deadline = std::time::Instant::now() + forkletd::testing::DEADLINE;
        while std::net::TcpStream::connect((host, port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the host API server never listened"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn published_port(container: &str, port: &str) -> u16 {
    let binding = docker(&["port", container, port]);
    let first = binding.lines().next().unwrap();
    first.rsplit(':').next().unwrap().parse().unwrap()
}

fn address_on(container: &str, network: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    ])
}

/// The workspace `dev`, with the kubeconfig file `kubeconfig` beside it.
fn workspace_with_file(harness: &Harness, kubeconfig: &str) {
    harness.write_kubeconfig(kubeconfig);
    harness.write(
        "ws.yaml",
        &format!("{WORKSPACE}spec:\n  connection: {{type: local, kubeconfig: kubeconfig}}\n"),
    );
}

fn kubectl_module() -> String {
    ModuleYaml {
        image: KUBECTL_IMAGE,
        spec: "permissions: [workspace]",
        ..ModuleYaml::default()
    }
    .to_string()
}

trait KubeconfigFile {
    fn write_kubeconfig(&self, text: &str);
    fn runner_kubeconfig(&self) -> Value;
}

impl KubeconfigFile for Harness {
    /// Replaced whole, as `kind` and `k3d` write it.
    fn write_kubeconfig(&self, text: &str) {
        let path = self.manifests.path().join("kubeconfig");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// The kubeconfig the module's runner reads.
    fn runner_kubeconfig(&self) -> Value {
        let text = std::fs::read_to_string(self.runner_dir("app").join("workspace_kubeconfig"))
            .expect("the runner has a kubeconfig");
        serde_yaml::from_str(&text).unwrap()
    }
}

/// What `forklet doctor` reports of workspace `dev`.
async fn doctor(harness: &Harness) -> Value {
    harness
        .api("/v1/workspaces/default/dev/doctor")
        .await
        .expect("the workspace exists")
}

async fn cluster_view(harness: &Harness) -> Value {
    let workspaces = harness.workspaces().await;
    serde_json::to_value(&workspaces[0].cluster).unwrap()
}

/// Lines the module printed for successful calls to `endpoint`.
async fn answered(harness: &Harness, runner: &str, endpoint: &str) -> Vec<Value> {
    harness
        .output(runner)
        .await
        .into_iter()
        .filter(|line| line["endpoint"] == endpoint && line["error"].is_null())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_cluster_is_reached_on_its_network_and_again_after_it_is_recreated() {
    // Made first, so dropped last: the runners on its networks go first.
    let mut made = Made::default();
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    let cluster = unique("kind");
    let (network, node) = (cluster.clone(), format!("{cluster}-control-plane"));
    made.network(&network);
    let (pki, port) = made.kind(&cluster, "v1.31.0-kind-1");
    let server = format!("https://127.0.0.1:{port}");

    // The negative control: a kubeconfig that trusts another CA is refused
    // by the module's client, so a success below means TLS was verified.
    let stranger = Pki::new();
    stranger.issue("client", "/CN=stranger", "");
    workspace_with_file(
        &harness,
        &kubeconfig(&server, &stranger, User::Certificate(&stranger)),
    );
    harness.write("app.yaml", &kubectl_module());
    let refused = harness
        .wait_until("the install refused by TLS", || async {
            harness.module("app").await.filter(|m| {
                m.message
                    .contains("certificate signed by unknown authority")
            })
        })
        .await;
    assert_eq!(refused.phase, ModulePhase::Failed);

    harness.write_kubeconfig(&kubeconfig(&server, &pki, User::Certificate(&pki)));
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-kind-1");
    let runner = ready.container_id.clone().unwrap();
    let joined = docker(&[
        "inspect",
        "-f",
        "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
        &runner,
    ]);
    assert_eq!(joined, network, "the runner is on the cluster's network");
    let written = harness.runner_kubeconfig();
    let cluster_entry = &written["clusters"][0]["cluster"];
    assert_eq!(cluster_entry["server"], format!("https://{node}:6443"));
    assert_eq!(
        cluster_entry["tls-server-name"], "127.0.0.1",
        "checked as the host checks it"
    );
    assert!(
        !serde_yaml::to_string(&written)
            .unwrap()
            .contains("insecure-skip-tls-verify")
    );
    let view = cluster_view(&harness).await;
    assert_eq!(view["via"], format!("network {network}"));
    assert_eq!(view["endpoint"], format!("https://{node}:6443"));
    let doctor = doctor(&harness).await;
    assert_eq!(doctor["ok"], true, "{doctor}");
    assert_eq!(
        doctor["checks"][3]["detail"],
        "GET /version: 200, v1.31.0-kind-1 (client certificate)"
    );

    // `kind delete cluster && kind create cluster`: a new CA, a new port.
    made.remove_container(&node);
    let (renewed, new_port) = made.kind(&cluster, "v1.31.0-kind-2");
    harness.write_kubeconfig(&kubeconfig(
        &format!("https://127.0.0.1:{new_port}"),
        &renewed,
        User::Certificate(&renewed),
    ));
    let new_ca = renewed.b64("ca.crt");
    harness
        .wait_until("the runner's kubeconfig renewed", || async {
            (harness.runner_kubeconfig()["clusters"][0]["cluster"]["certificate-authority-data"]
                == new_ca.as_str())
            .then_some(())
        })
        .await;
    // The module's next call reaches the new cluster, from the same runner,
    // without a second install.
    let (status, _) = harness
        .api_post("/v1/modules/default/app/sleep", &json!({}))
        .await;
    assert!(status.is_success(), "{status}");
    let asleep = harness.wait_phase("app", "sleeped").await;
    assert_eq!(asleep.metadata["serverVersion"], "v1.31.0-kind-2");
    assert_eq!(asleep.container_id.as_deref(), Some(runner.as_str()));
    assert_eq!(answered(&harness, &runner, "install").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k3d_cluster_is_reached_from_an_operator_workspace_with_a_secret_reference() {
    // Made first, so dropped last: the runners on its networks go first.
    let mut made = Made::default();
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    let cluster = unique("k3d");
    let (network, lb) = (format!("k3d-{cluster}"), format!("k3d-{cluster}-serverlb"));
    made.network(&network);
    let pki = Pki::new();
    // Not the container's name: the runner checks the certificate as 0.0.0.0.
    pki.issue("server", "/CN=k3s", "IP:0.0.0.0,IP:127.0.0.1,DNS:localhost");
    let token = "k3d-token-7f3a9";
    let label = format!("k3d.cluster={cluster}");
    made.api_server(
        &lb,
        &network,
        &pki,
        &[
            "--label",
            &label,
            "--label",
            "k3d.role=loadbalancer",
            "-p",
            "0.0.0.0::6443",
            "-e",
            &format!("TOKEN={token}"),
            "-e",
            "GIT_VERSION=v1.31.0-k3s",
        ],
    );
    let port = published_port(&lb, "6443/tcp");
    let text = kubeconfig(&format!("https://0.0.0.0:{port}"), &pki, User::Token(token));
    let (status, body) = harness
        .api_post(
            "/v1/secrets",
            &json!({
                "name": "k3d-dev", "type": "generic", "data": {"kubeconfig": STANDARD.encode(&text)}
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The operator's own Workspace, unchanged.
    harness.write(
        "ws.yaml",
        &format!("{WORKSPACE}spec:\n  type: kubernetes\n  connection:\n    type: kubeconfig\n    secretReference:\n      name: k3d-dev\n      namespace: default\n      key: kubeconfig\n"),
    );
    harness.write("app.yaml", &kubectl_module());
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-k3s");
    let written = harness.runner_kubeconfig();
    assert_eq!(
        written["clusters"][0]["cluster"]["server"],
        format!("https://{lb}:6443")
    );
    assert_eq!(
        written["clusters"][0]["cluster"]["tls-server-name"],
        "0.0.0.0"
    );

    // A restarted daemon adopts the runner where it is: same container,
    // same network, no second install.
    harness.restart().await;
    let runner = ready.container_id.clone().unwrap();
    harness
        .wait_until("the module adopted", || async {
            harness.module("app").await.filter(|m| {
                m.phase == ModulePhase::Ready && m.container_id.as_deref() == Some(runner.as_str())
            })
        })
        .await;
    assert_eq!(answered(&harness, &runner, "install").await.len(), 1);

    let (status, body) = harness.api_delete("/v1/secrets/k3d-dev").await;
    assert_eq!(
        (status.as_u16(), &body["code"]),
        (409, &json!("secret_in_use"))
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("workspace default/dev"),
        "{body}"
    );
    let listed: Value = harness.api("/v1/secrets").await.unwrap();
    assert_eq!(
        listed,
        json!([{"name": "k3d-dev", "namespace": "default", "type": "generic"}])
    );
    assert!(!harness.everything_the_api_says().await.contains(token));
    assert!(
        !forkletd::testing::logs().contains(token),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minikube_cluster_is_reached_at_its_address_on_its_own_network() {
    // Made first, so dropped last: the runners on its networks go first.
    let mut made = Made::default();
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    let profile = unique("minikube");
    made.network(&profile);
    let pki = Pki::new();
    let label = format!("name.minikube.sigs.k8s.io={profile}");
    // The certificate names the address, known once the container runs;
    // the stand-in waits for it.
    made.api_server(
        &profile,
        &profile,
        &pki,
        &[
            "--label",
            &label,
            "-e",
            "API_PORT=8443",
            "-e",
            "GIT_VERSION=v1.31.0-minikube",
        ],
    );
    let ip = address_on(&profile, &profile);
    pki.issue(
        "server",
        "/CN=minikube",
        &format!("IP:{ip},DNS:{profile},DNS:localhost"),
    );
    pki.issue("client", "/O=system:masters/CN=minikube-user", "");
    workspace_with_file(
        &harness,
        &kubeconfig(&format!("https://{ip}:8443"), &pki, User::Certificate(&pki)),
    );
    harness.write("app.yaml", &kubectl_module());
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-minikube");
    let written = harness.runner_kubeconfig();
    assert_eq!(
        written["clusters"][0]["cluster"]["server"],
        format!("https://{profile}:8443")
    );
    assert_eq!(
        written["clusters"][0]["cluster"]["tls-server-name"],
        ip.as_str()
    );
    assert_eq!(cluster_view(&harness).await["network"], profile.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_host_loopback_is_relayed_to_runners_and_to_no_one_else() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    let pki = Pki::new();
    pki.issue("server", "/CN=k3s", "IP:127.0.0.1,DNS:localhost");
    let token = "host-token-51c2";
    let host = HostServer::start("127.0.0.1", &pki, token);
    workspace_with_file(
        &harness,
        &kubeconfig(
            &format!("https://127.0.0.1:{}", host.port),
            &pki,
            User::Token(token),
        ),
    );
    harness.write("app.yaml", &kubectl_module());
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-host");
    let view = cluster_view(&harness).await;
    let via = view["via"].as_str().unwrap();
    assert!(
        via.starts_with("relay ") && via.ends_with(&format!("-> 127.0.0.1:{}", host.port)),
        "{via}"
    );
    assert_eq!(
        harness.runner_kubeconfig()["clusters"][0]["cluster"]["tls-server-name"],
        "127.0.0.1"
    );
    let doctor = doctor(&harness).await;
    let names: Vec<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["route", "connect", "tls", "version"], "{doctor}");
    assert_eq!(doctor["ok"], true, "through the relay: {doctor}");

    // A container that is not a runner gets nothing from the relay, even
    // with the runner's own kubeconfig.
    let mount = format!("{}:/k:ro", harness.runner_dir("app").display());
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-v",
            &mount,
            "--entrypoint",
            "kubectl",
            KUBECTL_IMAGE,
            "--kubeconfig",
            "/k/workspace_kubeconfig",
            "--request-timeout=5s",
            "get",
            "--raw",
            "/version",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a stranger was relayed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        forkletd::testing::logs().contains("relay refused a connection that is not from a runner"),
        "refused by the relay, not lost on the way"
    );

    // Nor does the runner of a module without the `workspace` permission.
    let plain = ModuleYaml {
        name: "plain",
        image: KUBECTL_IMAGE,
        ..ModuleYaml::default()
    };
    harness.write("plain.yaml", &plain.to_string());
    let plain = harness.wait_phase("plain", "ready").await;
    let kubeconfig = std::fs::read(harness.runner_dir("app").join("workspace_kubeconfig")).unwrap();
    let mut exec = Command::new("docker")
        .args([
            "exec", "-i", plain.container_id.as_deref().unwrap(), "sh", "-c",
            "cat > /tmp/kc && HOME=/tmp kubectl --kubeconfig /tmp/kc --request-timeout=5s get --raw /version",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut exec.stdin.take().unwrap(), &kubeconfig).unwrap();
    let out = exec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a runner without the permission was relayed"
    );
    assert!(
        !stderr.contains("certificate"),
        "refused before TLS: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_follows_its_cluster_to_another_network_without_a_second_install() {
    let mut made = Made::default();
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    // First a cluster on the host (k3s), reached through the relay...
    let host_pki = Pki::new();
    host_pki.issue("server", "/CN=k3s", "IP:127.0.0.1");
    let host = HostServer::start("127.0.0.1", &host_pki, "host-token");
    workspace_with_file(
        &harness,
        &kubeconfig(
            &format!("https://127.0.0.1:{}", host.port),
            &host_pki,
            User::Token("host-token"),
        ),
    );
    harness.write("app.yaml", &kubectl_module());
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-host");
    let first = ready.container_id.clone().unwrap();
    let first_output = harness.follow_output(&first);

    // ...then the developer switches to a kind cluster on its own network.
    let cluster = unique("kind");
    made.network(&cluster);
    let (pki, port) = made.kind(&cluster, "v1.31.0-kind");
    harness.write_kubeconfig(&kubeconfig(
        &format!("https://127.0.0.1:{port}"),
        &pki,
        User::Certificate(&pki),
    ));
    let moved = harness
        .wait_until("a runner on the cluster's network", || async {
            let module = harness.module("app").await?;
            let id = module.container_id.clone()?;
            // The id shown may be of a runner just replaced: ask, don't insist.
            let on = Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}}{{end}}",
                    &id,
                ])
                .output()
                .ok()?;
            let on = String::from_utf8_lossy(&on.stdout).trim().to_owned();
            (id != first && on == cluster && module.phase == ModulePhase::Ready).then_some(id)
        })
        .await;
    let (status, _) = harness
        .api_post("/v1/modules/default/app/sleep", &json!({}))
        .await;
    assert!(status.is_success(), "{status}");
    let asleep = harness.wait_phase("app", "sleeped").await;
    assert_eq!(asleep.metadata["serverVersion"], "v1.31.0-kind");
    let installs = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["endpoint"] == "install" && l["error"].is_null())
            .count()
    };
    assert_eq!(installs(&first_output.finish().await), 1);
    assert_eq!(
        answered(&harness, &moved, "install").await.len(),
        0,
        "no install on the new runner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_is_left_as_written() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_kubectl_image();
    // Remote from the runner's point of view: an address of this machine
    // that is neither loopback nor any container's.
    let subnet = docker(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
    ]);
    // The host's address on the default bridge is the subnet's first.
    let network: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    let gateway = std::net::Ipv4Addr::from(u32::from(network) + 1).to_string();
    let pki = Pki::new();
    pki.issue("server", "/CN=remote", &format!("IP:{gateway}"));
    let host = HostServer::start(&gateway, &pki, "remote-token");
    let server = format!("https://{gateway}:{}", host.port);
    workspace_with_file(
        &harness,
        &kubeconfig(&server, &pki, User::Token("remote-token")),
    );
    harness.write("app.yaml", &kubectl_module());
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["serverVersion"], "v1.31.0-host");
    let written = harness.runner_kubeconfig();
    assert_eq!(written["clusters"][0]["cluster"]["server"], server.as_str());
    assert!(
        written["clusters"][0]["cluster"]
            .get("tls-server-name")
            .is_none()
    );
    assert_eq!(cluster_view(&harness).await["via"], "direct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_nothing_serves_is_named_and_no_runner_is_started() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pki = Pki::new();
    workspace_with_file(
        &harness,
        &kubeconfig(&format!("https://127.0.0.1:{port}"), &pki, User::Token("t")),
    );
    harness.write("app.yaml", &kubectl_module());
    let failed = harness.wait_phase("app", "failed").await;
    let expected = format!(
        "workspace default/dev: nothing serves 127.0.0.1:{port}: no running container publishes port {port}"
    );
    assert!(failed.message.contains(&expected), "{}", failed.message);
    assert!(
        harness.containers().await.is_empty(),
        "no runner was started"
    );
    let view = cluster_view(&harness).await;
    assert!(
        view["reason"].as_str().unwrap().contains(&expected),
        "{view}"
    );
    let doctor = doctor(&harness).await;
    assert_eq!(doctor["ok"], false);
    assert_eq!(doctor["checks"][0]["name"], "route");
    assert!(
        doctor["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&expected),
        "{doctor}"
    );
}
