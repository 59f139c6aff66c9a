//! The `dtk/ssh` target end to end, through the library: a target of several "hosts" (one
//! real sshd listening on 127.0.0.1, .2 and .3, each host with its own work directory),
//! services staged on it, converged, edited, exec'd and deleted, with the files checked on
//! disk. Also: failing actions, host keys (strict, trust on first use, changed), refused
//! logins, a connection dropped in the middle of an action, and a node of another provider
//! reached over SSH through its outputs (as the AWS target's EC2 nodes are).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtk_instance::converge::{RunOptions, RunReport};
use dtk_instance::home::Home;
use dtk_instance::service::Service;
use dtk_instance::stage::StageRequest;
use dtk_model::provider::ResourceRequest;
use dtk_model::{Attributes, Provider, ProviderError, Value};
use tempfile::TempDir;

use dtk_tests::sshd::{self, Sshd, current_user};

/// A small multi-node application whose actions leave files to check.
const FILES_MODULE: &str = r#"
dsl_version: 1.0.0
module: test/files
version: 1.0.0
component_defs:
  store:
    attributes:
      message: {type: string, default: hello}
      token: {type: string, secret: true}
      file: {type: string, dynamic: true}
      stamp: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN printf '%s\n' {{message}} > message.txt
        - RUN printf '%s|%s|%s|%s\n' "$message" "$DTK_NODE" "$DTK_SERVICE" "$token" > env.txt
        - RUN echo "file=$PWD/message.txt" >> "$DTK_OUTPUT"
        - RUN echo "stamp=$(cksum < message.txt | cut -d' ' -f1)" >> "$DTK_OUTPUT"
      delete:
        commands:
        - RUN rm -f message.txt env.txt
      show:
        commands:
        - RUN cat message.txt
        - RUN echo asked for {{who}}
  reader:
    attributes:
      source: {type: string}
      stamp: {type: string}
    dependencies: [store]
    link_defs:
      store:
        attribute_mappings: ["$file -> source", "$stamp -> stamp"]
    actions:
      create:
        commands:
        - RUN cp {{source}} copy.txt
      delete:
        commands:
        - RUN rm -f copy.txt
  worker:
    attributes:
      job: {type: string, default: idle}
    actions:
      create:
        commands:
        - RUN printf '%s\n' {{job}} > job.txt
  broken:
    actions:
      create:
        commands:
        - RUN echo before > before.txt
        - RUN echo 'it broke' >&2; exit 3
        - RUN echo after > after.txt
  slow:
    actions:
      create:
        timeout: 2
        commands:
        - RUN echo started > started.txt; sleep 31.75
  flaky:
    actions:
      create:
        commands:
        - RUN if [ ! -f started ]; then touch started; sleep 30; fi; echo done > finished.txt
  steady:
    actions:
      create:
        commands:
        - RUN sleep 3; echo done > finished.txt
assemblies:
  app:
    components:
    - node[db]:
        components: [store]
    - node[web]:
        components: [reader]
    - node_group[workers]:
        attributes: {cardinality: 2}
        components:
        - worker:
            attributes: {job: crunch}
  broken:
    components:
    - node[db]:
        components: [store]
    - node[bad]:
        components: [broken]
    - node[slow]:
        components: [slow]
  drop:
    components:
    - node[one]:
        components: [flaky]
    - node[two]:
        components: [steady]
  pair:
    components:
    - node[db]:
        components: [store]
    - node[web]:
        components: [reader]
"#;

/// A target whose nodes are made by another provider (`fake.node`) that only reports SSH
/// outputs and runs no commands itself, as the AWS target's EC2 nodes do.
const FAKE_TARGET_MODULE: &str = r#"
dsl_version: 1.0.0
module: test/fakecloud
version: 1.0.0
component_defs:
  node:
    attributes:
      ssh_host: {type: string, dynamic: true}
      ssh_port: {type: integer, dynamic: true}
      ssh_user: {type: string, dynamic: true}
      ssh_key_path: {type: string, dynamic: true}
      ssh_known_hosts_path: {type: string, dynamic: true}
      ssh_host_key_policy: {type: string, dynamic: true}
      ssh_workdir: {type: string, dynamic: true}
    actions:
      create: {provider: fake.node}
      delete: {provider: fake.node}
assemblies:
  target:
    node_component: fakecloud::node
"#;

/// A test's world: one sshd on several loopback addresses, a dtk home, a place for hosts.
struct World {
    sshd: Sshd,
    tmp: TempDir,
    home: Home,
}

impl World {
    fn new() -> World {
        Self::on(&["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    }

    fn on(addresses: &[&str]) -> World {
        let sshd = Sshd::start_on(addresses);
        let tmp = tempfile::Builder::new()
            .prefix("dtk-sshT")
            .tempdir()
            .expect("temp dir");
        let home = Home::open(&tmp.path().join("home")).expect("home");
        let module = tmp.path().join("files");
        std::fs::create_dir_all(&module).expect("module dir");
        std::fs::write(module.join("dtk.module.yaml"), FILES_MODULE).expect("module");
        home.catalog().publish(&module).expect("publish test/files");
        World { sshd, tmp, home }
    }

    fn known_hosts(&self) -> PathBuf {
        let path = self.tmp.path().join("known_hosts");
        if !path.exists() {
            self.sshd.write_known_hosts(&path);
        }
        path
    }

    fn workdir(&self, host: &str) -> PathBuf {
        self.tmp.path().join(format!("hosts/{host}"))
    }

    /// `{name, address, port, workdir}` entries: host `names[i]` on address `i`.
    fn hosts_yaml(&self, names: &[&str]) -> String {
        let entries: Vec<String> = names
            .iter()
            .zip(self.sshd.addresses())
            .map(|(name, address)| {
                format!(
                    "{{name: '{name}', address: {address}, port: {}, workdir: '{}'}}",
                    self.sshd.port(),
                    self.workdir(name).display()
                )
            })
            .collect();
        format!("[{}]", entries.join(", "))
    }

    /// Stages the `dtk/ssh` target `name` with `hosts`, the server's key and known hosts.
    fn stage_target(&self, name: &str, hosts: &str) -> Service {
        self.home
            .stage(&StageRequest {
                module: "dtk/ssh".parse().expect("id"),
                version: None,
                assembly: "target".to_owned(),
                name: name.to_owned(),
                target: None,
                base: true,
            })
            .expect("stage target");
        let target = self.home.service(name).expect("target");
        let key = self.sshd.user_key();
        let known = self.known_hosts();
        for (path, value) in [
            ("inventory/hosts", hosts.to_owned()),
            ("inventory/user", current_user()),
            ("inventory/private_key_path", quoted(&key)),
            ("inventory/known_hosts_path", quoted(&known)),
            ("inventory/connect_timeout", "5".to_owned()),
        ] {
            target.set_attribute(path, &value).expect(path);
        }
        target
    }

    fn stage_app(&self, module: &str, assembly: &str, name: &str, target: &str) -> Service {
        self.home
            .stage(&StageRequest {
                module: module.parse().expect("id"),
                version: None,
                assembly: assembly.to_owned(),
                name: name.to_owned(),
                target: Some(target.to_owned()),
                base: false,
            })
            .expect("stage app");
        self.home.service(name).expect("app")
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn converge(svc: &Service) -> RunReport {
    svc.converge(&RunOptions {
        default_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .expect("converge runs")
}

fn assert_ok(report: &RunReport) {
    assert!(report.is_success(), "{}\n{:#?}", report.tree, report.tasks);
}

fn failure(report: &RunReport) -> String {
    assert!(!report.is_success(), "expected a failure:\n{}", report.tree);
    report
        .tasks
        .iter()
        .filter(|t| t.status == "failed")
        .filter_map(|t| t.detail.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

fn output(svc: &Service, component: &str, attr: &str) -> Value {
    svc.actual_values().expect("actual")[component]
        .get(attr)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Every file under `dir`, as text, concatenated (to look for what must not be there).
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_converges_onto_several_hosts_edits_execs_and_deletes() {
    let w = World::new();
    let target = w.stage_target("hosts", &w.hosts_yaml(&["db", "a", "b"]));
    let report = converge(&target).await;
    assert_ok(&report);
    assert_eq!(
        output(&target, "inventory", "host_names"),
        Value::Array(
            vec!["db".into(), "a".into(), "b".into()]
                .into_iter()
                .map(Value::Str)
                .collect()
        )
    );

    let app = w.stage_app("test/files", "app", "shop", "hosts");
    app.set_attribute("db/store/token", "s3cr3t-t0ken")
        .expect("secret");
    let report = converge(&app).await;
    assert_ok(&report);

    // `db` has a host of its name; web and the workers take a, b, a in declared order.
    let node = |n: &str, attr: &str| output(&app, &format!("node[{n}]"), attr);
    assert_eq!(node("db", "ssh_host_name"), Value::Str("db".into()));
    assert_eq!(node("web", "ssh_host_name"), Value::Str("a".into()));
    assert_eq!(node("workers:1", "ssh_host_name"), Value::Str("b".into()));
    assert_eq!(node("workers:2", "ssh_host_name"), Value::Str("a".into()));
    assert_eq!(node("web", "ssh_host"), Value::Str("127.0.0.2".into()));
    assert_eq!(
        node("web", "ssh_port"),
        Value::Int(i64::from(w.sshd.port()))
    );
    let db_dir = w.workdir("db").join("shop/db");
    assert_eq!(
        node("db", "ssh_workdir"),
        Value::Str(db_dir.display().to_string())
    );

    // Real files, in WORKDIR/SERVICE/NODE on each host; attributes and secrets reach the
    // environment; outputs flow through the link to another host.
    let db_files = db_dir.join("modules/test/files");
    assert_eq!(read(&db_files.join("message.txt")), "hello\n");
    assert_eq!(
        read(&db_files.join("env.txt")),
        "hello|db|shop|s3cr3t-t0ken\n"
    );
    assert_eq!(
        output(&app, "db/store", "file"),
        Value::Str(db_files.join("message.txt").display().to_string())
    );
    assert_eq!(
        read(&w.workdir("a").join("shop/web/modules/test/files/copy.txt")),
        "hello\n"
    );
    assert_eq!(
        read(
            &w.workdir("b")
                .join("shop/workers:1/modules/test/files/job.txt")
        ),
        "crunch\n"
    );
    assert_eq!(
        read(
            &w.workdir("a")
                .join("shop/workers:2/modules/test/files/job.txt")
        ),
        "crunch\n"
    );
    // No run files are left behind: each host's shell removes them in batches, and the
    // rest when it ends, after five idle seconds.
    assert!(db_dir.is_dir(), "db dir");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sshd::run_files(&db_dir).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", sshd::run_files(&db_dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing changed: nothing runs (the nodes were read over SSH and are present).
    let again = converge(&app).await;
    assert_ok(&again);
    assert!(again.tasks.is_empty(), "{}", again.tree);

    // An edit with quotes and shell words is data, never code.
    let tricky = "it's $HOME `id` \"quoted\"";
    app.set_attribute(
        "db/store/message",
        &format!("'{}'", tricky.replace('\'', "''")),
    )
    .expect("set");
    let report = converge(&app).await;
    assert_ok(&report);
    assert_eq!(
        read(&db_dir.join("modules/test/files/message.txt")),
        format!("{tricky}\n")
    );
    assert_eq!(
        read(&w.workdir("a").join("shop/web/modules/test/files/copy.txt")),
        format!("{tricky}\n")
    );

    // Moving a node to another host: its components run there, its old directory goes.
    app.set_attribute("web/host_name", "b")
        .expect("set host_name");
    assert_ok(&converge(&app).await);
    assert_eq!(node("web", "ssh_host_name"), Value::Str("b".into()));
    assert_eq!(
        read(&w.workdir("b").join("shop/web/modules/test/files/copy.txt")),
        format!("{tricky}\n")
    );
    assert!(!w.workdir("a").join("shop/web").exists());
    assert!(
        w.workdir("a")
            .join("shop/workers:2/modules/test/files/job.txt")
            .is_file()
    );

    // A custom action with a parameter; its output is in the task log.
    let params = [("who".to_owned(), Value::Str("the test".into()))].into();
    let ran = app
        .exec("db/store.show", params, &RunOptions::default())
        .await
        .expect("exec");
    assert_ok(&ran);
    let log = read(ran.tasks[0].log.as_ref().expect("log"));
    assert!(
        log.contains(tricky) && log.contains("asked for the test"),
        "{log}"
    );

    // Paths and settings are recorded, never the key or the secret.
    let key = read(&w.sshd.user_key());
    let recorded = all_text(app.dir()) + &all_text(target.dir());
    assert!(recorded.contains("ssh_known_hosts_path"));
    assert!(!recorded.contains(key.trim()), "the private key leaked");
    assert!(!recorded.contains("s3cr3t-t0ken"), "the secret leaked");

    // Delete removes every node directory.
    let deleted = app.delete(&RunOptions::default()).await.expect("delete");
    assert_ok(&deleted);
    for dir in [
        "db/shop/db",
        "a/shop/web",
        "b/shop/workers:1",
        "a/shop/workers:2",
    ] {
        let path = w.tmp.path().join("hosts").join(dir);
        assert!(!path.exists(), "{} is still there", path.display());
    }
    assert!(app.actual_state().expect("state").components.is_empty());
}

/// `dtk service import APP 'node[web]' HOST`: a node bound to a host of the inventory that
/// it would not have been placed on, and kept there; delete leaves the imported node's
/// directory (not adopted), removes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_imported_into_a_node_is_used_and_left_by_delete() {
    let w = World::on(&["127.0.0.1", "127.0.0.2"]);
    let target = w.stage_target("duo", &w.hosts_yaml(&["db", "web"]));
    assert_ok(&converge(&target).await);
    let app = w.stage_app("test/files", "pair", "imp", "duo");
    let opts = RunOptions::default();
    let unknown = app
        .import("node[web]", "nosuch", false, &opts)
        .await
        .expect_err("no such host");
    assert!(
        unknown.to_string().contains("no host `nosuch`"),
        "{unknown}"
    );
    let imported = app
        .import("node[web]", "db", false, &opts)
        .await
        .expect("import");
    assert_eq!(imported.status, "matches", "{imported:?}");
    assert_eq!(imported.outputs["ssh_host_name"], Value::from("db"));
    let plan = app.plan().await.expect("plan").1;
    let planned: Vec<String> = plan.tasks().map(|t| t.id.to_string()).collect();
    assert!(
        !planned.contains(&"node[web].create".to_owned()),
        "the imported node is not made again: {planned:?}"
    );
    assert_ok(&converge(&app).await);
    // web runs on host db, where it was imported, next to db.
    assert!(
        w.workdir("db")
            .join("imp/web/modules/test/files/copy.txt")
            .is_file()
    );
    assert!(
        w.workdir("db")
            .join("imp/db/modules/test/files/message.txt")
            .is_file()
    );
    assert!(!w.workdir("web").join("imp").exists());
    assert!(app.plan().await.expect("plan").1.is_empty());
    assert_ok(&app.delete(&opts).await.expect("delete"));
    assert!(
        w.workdir("db").join("imp/web").is_dir(),
        "an import without adopt is never deleted"
    );
    assert!(!w.workdir("db").join("imp/db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_webapp_runs_on_two_hosts() {
    let w = World::on(&["127.0.0.1", "127.0.0.2"]);
    w.home
        .catalog()
        .publish(&crate::support::example("webapp"))
        .expect("publish webapp");
    let target = w.stage_target("pair", &w.hosts_yaml(&["db", "web"]));
    assert_ok(&converge(&target).await);
    let app = w.stage_app("demo/webapp", "two_tier", "site", "pair");
    assert_ok(&converge(&app).await);
    let url = output(&app, "web/web", "url");
    let url = url.as_str().expect("url");
    assert_eq!(
        crate::converge::http_get(url).trim(),
        "The backend says: hello from dtk"
    );
    assert!(
        w.workdir("db")
            .join("site/db/modules/demo/webapp/www/message.txt")
            .is_file()
    );
    assert!(
        w.workdir("web")
            .join("site/web/modules/demo/webapp/www/index.html")
            .is_file()
    );

    app.set_attribute("db/backend/message", "over ssh")
        .expect("set");
    assert_ok(&converge(&app).await);
    let url = output(&app, "web/web", "url");
    assert_eq!(
        crate::converge::http_get(url.as_str().expect("url")).trim(),
        "The backend says: over ssh"
    );
    let smoke = app
        .exec("web.smoke_test", Default::default(), &RunOptions::default())
        .await
        .expect("exec");
    assert_ok(&smoke);

    // Delete stops the servers it started on the hosts.
    assert_ok(&app.delete(&RunOptions::default()).await.expect("delete"));
    assert!(!w.workdir("web").join("site/web").exists());
    let gone =
        std::net::TcpStream::connect(url.as_str().expect("url").trim_start_matches("http://"));
    assert!(gone.is_err(), "the web server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_action_fails_its_task_with_its_status_and_stderr() {
    let w = World::on(&["127.0.0.1", "127.0.0.2"]);
    let target = w.stage_target("t", &w.hosts_yaml(&["db", "bad"]));
    assert_ok(&converge(&target).await);
    let app = w.stage_app("test/files", "broken", "b", "t");
    let report = converge(&app).await;
    let detail = failure(&report);
    assert!(
        detail.contains("exit status 3") && detail.contains("it broke"),
        "{detail}"
    );
    let bad = w.workdir("bad").join("b/bad/modules/test/files");
    assert!(bad.join("before.txt").is_file());
    assert!(
        !bad.join("after.txt").exists(),
        "lines after the failing one ran"
    );
    let task = report
        .tasks
        .iter()
        .find(|t| t.component == "bad/broken")
        .expect("failed task");
    assert_eq!(task.attempts, 1, "an exit status is not retried by default");
    let log = read(task.log.as_ref().expect("log"));
    assert!(log.contains("exit: 3") && log.contains("it broke"), "{log}");
    // The other node is unharmed.
    assert_eq!(
        read(&w.workdir("db").join("b/db/modules/test/files/message.txt")),
        "hello\n"
    );

    // An action past its time limit fails (after the retries a time-out gets) and is
    // stopped on its host.
    let slow = report
        .tasks
        .iter()
        .find(|t| t.component == "slow/slow")
        .expect("slow task");
    assert_eq!(slow.status, "failed", "{}", report.tree);
    let detail = slow.detail.clone().unwrap_or_default();
    assert!(detail.contains("timed out"), "{detail}");
    assert!(
        w.workdir("db")
            .join("b/slow/modules/test/files/started.txt")
            .is_file()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sshd::process_running(&["sleep", "31.75"]) {
        assert!(Instant::now() < deadline, "the timed-out action still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_checked_unknown_refused_when_strict_recorded_on_first_use_changed_refused() {
    let mut w = World::on(&["127.0.0.1"]);
    let empty = w.tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("known hosts");

    // Strict (the default): the target's converge names the host and what to do.
    let target = w.stage_target("t", &w.hosts_yaml(&["h"]));
    target
        .set_attribute("inventory/known_hosts_path", &quoted(&empty))
        .expect("set");
    let detail = failure(&converge(&target).await);
    assert!(
        detail.contains("host `h`")
            && detail.contains("is not in")
            && detail.contains("strict")
            && detail.contains(&w.sshd.host_fingerprint()),
        "{detail}"
    );

    // Trust on first use records the key, and the target converges.
    target
        .set_attribute("inventory/host_key_policy", "tofu")
        .expect("set");
    assert_ok(&converge(&target).await);
    assert!(read(&empty).contains(&format!("[127.0.0.1]:{}", w.sshd.port())));
    let app = w.stage_app("test/files", "app", "app", "t");
    assert_ok(&converge(&app).await);

    // The host is reinstalled with a new key: refused under trust on first use too.
    w.sshd.restart_with_new_host_key();
    app.set_attribute("db/store/message", "again").expect("set");
    let detail = failure(&converge(&app).await);
    assert!(detail.contains("HOST KEY CHANGED"), "{detail}");
    assert_eq!(
        read(&w.workdir("h").join("app/db/modules/test/files/message.txt")),
        "hello\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_hosts_do_not_accept_is_refused_clearly() {
    let w = World::on(&["127.0.0.1"]);
    let stranger = w.tmp.path().join("stranger_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let target = w.stage_target("t", &w.hosts_yaml(&["h"]));
    target
        .set_attribute("inventory/private_key_path", &quoted(&stranger))
        .expect("set");
    let started = Instant::now();
    let report = converge(&target).await;
    let detail = failure(&report);
    assert!(
        detail.contains("refused authentication") && detail.contains("stranger_key"),
        "{detail}"
    );
    // A refusal is not retried.
    assert_eq!(report.tasks[0].attempts, 1, "{}", report.tree);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_action_is_retried_and_other_hosts_are_unharmed() {
    // Two servers: host `one` on the first, host `two` on the second.
    let w = World::on(&["127.0.0.1"]);
    let other = Sshd::start_on(&["127.0.0.1"]);
    let known = w.known_hosts();
    let first = read(&known);
    other.write_known_hosts(&known);
    std::fs::write(&known, first + &read(&known)).expect("known hosts");
    // Both servers accept the same user key.
    std::fs::copy(
        w.sshd.user_key().with_extension("pub"),
        other.dir().join("authorized_keys"),
    )
    .expect("authorized_keys");
    let hosts = format!(
        "[{{name: one, address: 127.0.0.1, port: {}, workdir: '{}'}}, \
          {{name: two, address: 127.0.0.1, port: {}, workdir: '{}'}}]",
        w.sshd.port(),
        w.workdir("one").display(),
        other.port(),
        w.workdir("two").display()
    );
    let target = w.stage_target("t", &hosts);
    assert_ok(&converge(&target).await);
    let app = w.stage_app("test/files", "drop", "d", "t");

    let started_file = w.workdir("one").join("d/one/modules/test/files/started");
    let sshd = &w.sshd;
    let dropper = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started_file.exists() {
            assert!(Instant::now() < deadline, "the action never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        sshd.drop_connections();
    };
    let (report, ()) = tokio::join!(converge(&app), dropper);
    assert_ok(&report);
    let one = report
        .tasks
        .iter()
        .find(|t| t.node.as_deref() == Some("one") && t.component.contains("flaky"))
        .expect("flaky task");
    assert_eq!(one.attempts, 2, "{}", report.tree);
    let two = report
        .tasks
        .iter()
        .find(|t| t.node.as_deref() == Some("two") && t.component.contains("steady"))
        .expect("steady task");
    assert_eq!(two.attempts, 1, "{}", report.tree);
    assert_eq!(
        read(
            &w.workdir("one")
                .join("d/one/modules/test/files/finished.txt")
        ),
        "done\n"
    );
    assert_eq!(
        read(
            &w.workdir("two")
                .join("d/two/modules/test/files/finished.txt")
        ),
        "done\n"
    );
}

/// Nodes that only report where they are reachable by SSH, like EC2 instances.
struct FakeCloud {
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    workdir: PathBuf,
}

#[async_trait]
impl Provider for FakeCloud {
    fn kind(&self) -> &str {
        "fake"
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let node = req.node.unwrap_or("none");
        let mut out = Attributes::new();
        for (k, v) in [
            ("ssh_host", Value::Str("127.0.0.1".into())),
            ("ssh_port", Value::Int(i64::from(self.port))),
            ("ssh_user", Value::Str(current_user())),
            ("ssh_key_path", Value::Str(self.key.display().to_string())),
            (
                "ssh_known_hosts_path",
                Value::Str(self.known_hosts.display().to_string()),
            ),
            ("ssh_host_key_policy", Value::Str("strict".into())),
            (
                "ssh_workdir",
                Value::Str(self.workdir.join(node).display().to_string()),
            ),
        ] {
            out.insert(k.to_owned(), v);
        }
        Ok(out)
    }

    async fn delete(&self, _req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_provider_with_ssh_outputs_run_their_commands_over_ssh() {
    let w = World::on(&["127.0.0.1"]);
    let mut home = w.home.clone();
    let workdir = w.tmp.path().join("cloud");
    home.register_provider(Arc::new(FakeCloud {
        port: w.sshd.port(),
        key: w.sshd.user_key(),
        known_hosts: w.known_hosts(),
        workdir: workdir.clone(),
    }))
    .expect("register");
    let module = w.tmp.path().join("fakecloud");
    std::fs::create_dir_all(&module).expect("dir");
    std::fs::write(module.join("dtk.module.yaml"), FAKE_TARGET_MODULE).expect("module");
    home.catalog().publish(&module).expect("publish");
    home.stage(&StageRequest {
        module: "test/fakecloud".parse().expect("id"),
        version: None,
        assembly: "target".to_owned(),
        name: "cloud".to_owned(),
        target: None,
        base: true,
    })
    .expect("stage target");
    assert_ok(&converge(&home.service("cloud").expect("cloud")).await);
    home.stage(&StageRequest {
        module: "test/files".parse().expect("id"),
        version: None,
        assembly: "app".to_owned(),
        name: "app".to_owned(),
        target: Some("cloud".to_owned()),
        base: false,
    })
    .expect("stage app");
    let app = home.service("app").expect("app");
    assert_ok(&converge(&app).await);
    let files = |node: &str, f: &str| read(&workdir.join(node).join("modules/test/files").join(f));
    assert_eq!(files("db", "message.txt"), "hello\n");
    assert_eq!(files("web", "copy.txt"), "hello\n");
    assert_eq!(files("workers:2", "job.txt"), "crunch\n");
    // Over SSH, not in a local sandbox.
    assert!(!home.sandboxes_dir().join("app/db").exists());
    assert!(w.sshd.accepted_logins() >= 1);
}
