//! Module content on the nodes, every workflow, the target guard and pull-base, through the
//! `dtk` binary.

use std::path::Path;

use dtk_tests::harness::{CliHome, git_ok, module_dir};

/// A module that ships a script and data, and has `delete` and named workflows.
const TOOLS: &str = r#"dsl_version: 1.0.0
module: test/tools
version: 1.0.0
component_defs:
  app:
    attributes:
      greeting: {type: string, default: hello}
      token: {type: string, secret: true}
      said: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN ./bin/greet {{greeting}} >> create.log
        - {ADD: , source: conf/app.conf, target: conf/app.conf, template: true, mode: '0600'}
        - RUN echo "said=$(tail -n 1 create.log)" >> "$DTK_OUTPUT"
        - RUN echo "$DTK_MODULE_DIR" > module-dir.txt
      delete:
        commands:
        - RUN echo deleted >> "$DTK_MODULE_DIR/../../../steps.log"
      drain:
        commands:
        - RUN echo drain {{level}} >> "$DTK_MODULE_DIR/../../../steps.log"
  worker:
    actions:
      create:
        commands:
        - RUN ./bin/greet worker > worker.txt
      delete:
        commands:
        - RUN echo deleted worker >> "$DTK_MODULE_DIR/../../../steps.log"
      report:
        commands:
        - RUN echo "report $DTK_NODE" >> "$DTK_MODULE_DIR/../../../steps.log"
assemblies:
  one:
    components:
    - node[n]:
        components: [app]
    - node_group[pool]:
        attributes: {cardinality: 2}
        components: [worker]
    workflows:
      delete:
        subtask_order: sequential
        subtasks:
        - {name: drain first, node: n, actions: [app.drain], params: {level: 9}}
        - {name: then the app, node: n, components: [app]}
      maintenance:
        subtasks:
        - {name: drain, actions: [app.drain]}
        - {name: report, node_group: pool, actions: [worker.report]}
"#;

fn tools(dir: &Path) -> std::path::PathBuf {
    let m = module_dir(dir, "tools", TOOLS);
    std::fs::create_dir_all(m.join("bin")).unwrap();
    let greet = m.join("bin/greet");
    std::fs::write(&greet, "#!/bin/sh\necho \"$1 from the module\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&greet, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(m.join("conf")).unwrap();
    std::fs::write(
        m.join("conf/app.conf"),
        "greeting = {{greeting}}\ntoken = {{token}}\n",
    )
    .unwrap();
    // A file too big to be checked out by default (it stays in git until `edit`).
    std::fs::write(m.join("data.bin"), vec![b'x'; 100 * 1024]).unwrap();
    m
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn module_files_reach_the_node_and_an_edited_file_reruns_its_components() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    home.run(&["module", "install", tools(tmp.path()).to_str().unwrap()])
        .ok();
    home.run(&["service", "stage", "test/tools", "one", "-n", "s"])
        .ok();
    let repo = home.service_dir("s");
    // Small files are checked out, the big one stays in git; git agrees with dtk.
    assert!(repo.join("modules/test/tools/bin/greet").is_file());
    assert!(!repo.join("modules/test/tools/data.bin").exists());
    assert_eq!(git_ok(&repo, &["status", "--porcelain"]), "");

    home.run(&[
        "service",
        "set-attribute",
        "s",
        "n/app/token",
        "s3cr3t-v4lue",
    ])
    .ok();
    home.run(&["service", "converge", "s"]).ok();
    let files = home.module_sandbox("s", "n", "test/tools");
    assert_eq!(read(&files.join("create.log")), "hello from the module\n");
    // ADD rendered the template, the secret included, with the mode asked for; the
    // secret is nowhere else.
    let conf = files.join("conf/app.conf");
    assert_eq!(read(&conf), "greeting = hello\ntoken = s3cr3t-v4lue\n");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let leaks = dtk_tests::secrets::leaks_in_home(
        home.path(),
        &["s3cr3t-v4lue"],
        &["secrets", "sandboxes"],
    );
    assert!(
        leaks.is_empty(),
        "the rendered secret is only in the sandbox: {:?}",
        leaks.iter().map(|l| &l.place).collect::<Vec<_>>()
    );
    assert_eq!(
        read(&files.join("module-dir.txt")).trim(),
        files.display().to_string()
    );
    assert_eq!(read(&files.join("data.bin")).len(), 100 * 1024);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&files.join("data.bin"));

    // Converging again sends nothing: the node's files are the same files.
    let again = home.run(&["--json", "service", "converge", "s"]);
    again.ok();
    assert_eq!(again.json()["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(inode(&files.join("data.bin")), before);

    // Edit the script in the instance repository: git sees it, converge commits it and
    // runs again what runs in that module, with the new script.
    let greet = repo.join("modules/test/tools/bin/greet");
    std::fs::write(&greet, "#!/bin/sh\necho \"$1 from the edited module\"\n").unwrap();
    assert_eq!(
        git_ok(&repo, &["status", "--porcelain"]).trim(),
        "M modules/test/tools/bin/greet"
    );
    let plan = home.run(&["--json", "service", "plan", "s"]);
    let planned: Vec<String> = plan.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(planned.contains(&"n/app.create".to_owned()), "{planned:?}");
    home.run(&["service", "converge", "s", "-m", "louder"]).ok();
    assert_eq!(
        read(&files.join("create.log")),
        "hello from the module\nhello from the edited module\n"
    );
    assert_eq!(
        read(
            &home
                .module_sandbox("s", "pool:1", "test/tools")
                .join("worker.txt")
        ),
        "worker from the edited module\n"
    );
    assert_eq!(git_ok(&repo, &["status", "--porcelain"]), "");
    assert!(git_ok(&repo, &["log", "-1", "--format=%s"]).contains("louder"));
    // The big file was not sent again.
    assert_eq!(inode(&files.join("data.bin")), before);

    // `edit` checks out a file that stayed in git; editing it is desired state too.
    let edit = home.run(&[
        "--json",
        "service",
        "edit",
        "s",
        "modules/test/tools/data.bin",
    ]);
    edit.ok();
    assert_eq!(edit.json()["files"][0], "modules/test/tools/data.bin");
    let data = repo.join("modules/test/tools/data.bin");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 100 * 1024);
    assert_eq!(git_ok(&repo, &["status", "--porcelain"]), "");
    std::fs::write(&data, b"small now").unwrap();
    assert_eq!(
        git_ok(&repo, &["status", "--porcelain"]).trim(),
        "M modules/test/tools/data.bin"
    );
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(read(&files.join("data.bin")), "small now");
    home.run(&["service", "edit", "s", "modules/test/nothing"])
        .refused();

    // A module file removed or changed on the node is placed again before the next
    // action that runs there (the copy is checked before every action).
    std::fs::remove_file(files.join("bin/greet")).unwrap();
    std::fs::write(files.join("data.bin"), b"changed on the node").unwrap();
    home.run(&["service", "exec", "s", "n/app.drain", "level=1"])
        .ok();
    assert_eq!(
        read(&files.join("bin/greet")),
        "#!/bin/sh\necho \"$1 from the edited module\"\n"
    );
    assert_eq!(read(&files.join("data.bin")), "small now");
    home.fsck_all();
}

#[test]
fn named_workflows_run_exec_reaches_group_members_and_delete_follows_its_workflow() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    home.run(&["module", "install", tools(tmp.path()).to_str().unwrap()])
        .ok();
    home.run(&["service", "stage", "test/tools", "one", "-n", "s"])
        .ok();
    home.run(&["service", "converge", "s"]).ok();
    let steps = |node: &str| home.sandbox("s", node).join("steps.log");

    // A named workflow, with parameters.
    let ran = home.run(&["--json", "service", "exec", "s", "maintenance", "level=3"]);
    ran.ok();
    let ids: Vec<String> = ran.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "n/app.drain",
            "pool:1/worker.report",
            "pool:2/worker.report"
        ]
    );
    assert_eq!(read(&steps("n")), "drain 3\n");
    assert_eq!(read(&steps("pool:1")), "report pool:1\n");
    assert_eq!(read(&steps("pool:2")), "report pool:2\n");
    let unknown = home.run(&["service", "exec", "s", "maintenence"]);
    unknown.refused();
    assert!(unknown.stderr.contains("maintenance"), "{unknown:?}");

    // A component action named by its node group runs on every member.
    home.run(&["service", "exec", "s", "pool/worker.report"])
        .ok();
    assert_eq!(read(&steps("pool:2")), "report pool:2\nreport pool:2\n");

    // Delete runs the `delete` workflow: drain, then the app; the rest after.
    home.run(&["service", "delete", "s"]).ok();
    let order = home.run(&["--json", "service", "task-status", "s"]);
    let ids: Vec<String> = order.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let at = |id: &str| {
        ids.iter()
            .position(|x| x == id)
            .unwrap_or_else(|| panic!("{id}: {ids:?}"))
    };
    assert!(at("n/app.drain") < at("n/app.delete"), "{ids:?}");

    assert!(at("n/app.delete") < at("node[n].delete"), "{ids:?}");
}

#[test]
fn a_target_with_services_on_it_is_not_deleted_or_uninstalled_without_force() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    home.run(&["module", "install", tools(tmp.path()).to_str().unwrap()])
        .ok();
    home.run(&[
        "service",
        "stage",
        "dtk/local",
        "target",
        "--base",
        "-n",
        "box",
    ])
    .ok();
    home.run(&["service", "converge", "box"]).ok();
    home.run(&[
        "service",
        "stage",
        "test/tools",
        "one",
        "-n",
        "s1",
        "--target",
        "box",
    ])
    .ok();
    home.run(&[
        "service",
        "stage",
        "test/tools",
        "one",
        "-n",
        "s2",
        "--target",
        "box",
    ])
    .ok();
    home.run(&["service", "converge", "s1"]).ok();
    // Delete is refused while a service on the target has resources (s1, not s2) ...
    let r = home.run(&["service", "delete", "box"]);
    r.refused();
    assert!(
        r.stderr.contains("s1") && !r.stderr.contains("s2") && r.stderr.contains("--force"),
        "{r:?}"
    );
    // ... uninstall while any is staged on it.
    let r = home.run(&["service", "uninstall", "box"]);
    r.refused();
    assert!(
        r.stderr.contains("s1") && r.stderr.contains("s2") && r.stderr.contains("--force"),
        "{r:?}"
    );
    assert!(home.services().contains(&"box".to_owned()));
    home.run(&["service", "delete", "s1"]).ok();
    home.run(&["service", "uninstall", "s1"]).ok();
    home.run(&["service", "uninstall", "s2"]).ok();
    home.run(&["service", "delete", "box"]).ok();
    home.run(&["service", "uninstall", "box"]).ok();

    // --force overrides, as the message says.
    home.run(&[
        "service",
        "stage",
        "dtk/local",
        "target",
        "--base",
        "-n",
        "box2",
    ])
    .ok();
    home.run(&["service", "converge", "box2"]).ok();
    home.run(&[
        "service",
        "stage",
        "test/tools",
        "one",
        "-n",
        "s3",
        "--target",
        "box2",
    ])
    .ok();
    home.run(&["service", "uninstall", "box2"]).refused();
    home.run(&["service", "uninstall", "box2", "--force"]).ok();
}

#[test]
fn pull_base_merges_the_new_assembly_and_leaves_conflicts_marked_until_resolved() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tools(tmp.path());
    home.run(&["module", "install", v1.to_str().unwrap()]).ok();
    for s in ["clean", "clash"] {
        home.run(&["service", "stage", "test/tools", "one", "-n", s])
            .ok();
    }
    // 1.1.0: a new node with a component, a new default in the assembly, a new script line.
    let v2 = tmp.path().join("v2");
    std::fs::create_dir_all(v2.join("bin")).unwrap();
    std::fs::create_dir_all(v2.join("conf")).unwrap();
    for f in ["bin/greet", "data.bin", "conf/app.conf"] {
        std::fs::copy(v1.join(f), v2.join(f)).unwrap();
    }
    let text = TOOLS
        .replace("\nversion: 1.0.0", "\nversion: 1.1.0")
        .replace(
            "        components: [app]\n",
            "        components:\n        - app:\n            attributes: {greeting: hi}\n    - node[extra]:\n        components: [worker]\n",
        );
    std::fs::write(v2.join("dtk.module.yaml"), text).unwrap();
    std::fs::write(v2.join("bin/more"), "#!/bin/sh\necho more\n").unwrap();
    home.run(&["module", "install", v2.to_str().unwrap()]).ok();

    // `clean` edited its own line of the script: both changes land, nothing conflicts.
    let clean = home.service_dir("clean");
    let greet = clean.join("modules/test/tools/bin/greet");
    std::fs::write(&greet, format!("{}# mine\n", read(&greet))).unwrap();
    home.run(&["service", "converge", "clean"]).ok();
    home.run(&["service", "pull-base", "clean"]).ok();
    let doc = read(&clean.join("dtk.service.yaml"));
    assert!(
        doc.contains("node[extra]") && doc.contains("greeting: hi"),
        "{doc}"
    );
    assert!(doc.contains("test/tools: 1.1.0"), "{doc}");
    assert!(read(&greet).contains("# mine"));
    assert!(clean.join("modules/test/tools/bin/more").is_file());
    let conv = home.run(&["--json", "service", "converge", "clean"]);
    conv.ok();
    assert!(conv.stdout.contains("extra/worker.create"), "{conv:?}");

    // `clash` set the same attribute: a conflict, marked; converge refuses; abort restores.
    home.run(&["service", "set-attribute", "clash", "n/app/greeting", "yo"])
        .ok();
    home.run(&["service", "converge", "clash"]).ok();
    let repo = home.service_dir("clash");
    let head = git_ok(&repo, &["rev-parse", "HEAD"]);
    let before = read(&repo.join("dtk.service.yaml"));
    let pulled = home.run(&["--json", "service", "pull-base", "clash"]);
    pulled.refused();
    assert_eq!(
        pulled.json()["conflicts"][0],
        "dtk.service.yaml",
        "{pulled:?}"
    );
    let marked = read(&repo.join("dtk.service.yaml"));
    assert!(
        marked.contains("<<<<<<< instance")
            && marked.contains("greeting: yo")
            && marked.contains("greeting: hi")
            && marked.contains(">>>>>>> new version"),
        "{marked}"
    );
    let refused = home.run(&["service", "converge", "clash"]);
    refused.refused();
    assert!(refused.stderr.contains("dtk.service.yaml"), "{refused:?}");
    // Another pull-base waits for this one; a module the service does not use is named.
    let again = home.run(&["service", "pull-base", "clash"]);
    again.refused();
    assert!(
        again
            .stderr
            .contains("waits for its conflicts to be resolved")
            && again.stderr.contains("--abort"),
        "{again:?}"
    );
    assert_eq!(git_ok(&repo, &["rev-parse", "HEAD"]), head);
    home.run(&["service", "pull-base", "clash", "--abort"]).ok();
    assert_eq!(read(&repo.join("dtk.service.yaml")), before);
    assert_eq!(git_ok(&repo, &["status", "--porcelain"]), "");

    let unused = home.run(&["service", "pull-base", "clash", "demo/none"]);
    unused.refused();
    assert!(
        unused.stderr.contains("does not use module demo/none")
            && unused.stderr.contains("test/tools"),
        "{unused:?}"
    );

    // Again, resolved by hand: converge commits the merge and applies it.
    home.run(&["service", "pull-base", "clash"]).refused();
    // Resolved by hand: the new version's lines (its new node), with our greeting.
    let resolved: String = {
        let mut out = String::new();
        let mut skip = false;
        for line in read(&repo.join("dtk.service.yaml")).lines() {
            if line.starts_with("<<<<<<<") {
                skip = true;
                continue;
            }
            if line == "=======" || line.starts_with(">>>>>>>") {
                skip = false;
                continue;
            }
            if !skip {
                out.push_str(&line.replace("greeting: hi", "greeting: yo"));
                out.push('\n');
            }
        }
        out
    };
    std::fs::write(repo.join("dtk.service.yaml"), resolved).unwrap();
    home.run(&["service", "converge", "clash"]).ok();
    let doc = read(&repo.join("dtk.service.yaml"));
    assert!(
        doc.contains("greeting: yo") && doc.contains("node[extra]"),
        "{doc}"
    );
    assert!(
        git_ok(&repo, &["log", "-2", "--format=%s"])
            .contains("pull-base test/tools 1.0.0 -> 1.1.0")
    );
    assert_eq!(
        read(
            &home
                .module_sandbox("clash", "extra", "test/tools")
                .join("worker.txt")
        ),
        "worker from the module\n"
    );
    home.fsck_all();
}

/// Many components of one module on one node start at once: each syncs the module's copy
/// (the same directory) from its own thread, and none may trip over another's temporary
/// files.
#[test]
fn parallel_components_of_one_module_sync_its_copy_without_colliding() {
    let home = CliHome::new();
    let src = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: test/wide\nversion: 1.0.0\ncomponent_defs:\n  step:\n    \
         attributes:\n      k: {type: integer, required: true}\n    actions:\n      create:\n        \
         commands:\n        - RUN cat data/x.txt > f{{k}}\nassemblies:\n  wide:\n    components:\n",
    );
    for k in 1..=16 {
        text.push_str(&format!("    - step[s{k}]: {{attributes: {{k: {k}}}}}\n"));
    }
    std::fs::create_dir_all(src.path().join("data")).unwrap();
    std::fs::write(src.path().join("data/x.txt"), "x\n").unwrap();
    std::fs::write(src.path().join("dtk.module.yaml"), text).unwrap();
    home.run(&["module", "install", src.path().to_str().unwrap()])
        .ok();
    for round in 0..4 {
        let name = format!("w{round}");
        home.run(&["service", "stage", "test/wide", "wide", "-n", &name])
            .ok();
        home.run(&["service", "converge", &name]).ok();
    }
}

/// A module written without `version` (the original's form) is the development tag
/// `master`: a service pins `master` and keeps the copy it staged when the module is
/// installed again; pull-base then takes the new `master`, merged with the instance's
/// own edits (the base is the copy the instance took, not where the tag points now).
#[test]
fn a_module_without_version_is_master_and_pull_base_takes_its_new_content() {
    const NOV: &str = r#"module: test/nov
dependent_modules:
component_defs:
  app:
    attributes:
      msg: {type: string, default: one}
    actions:
      create:
        commands:
        - RUN: ./bin/say {{msg}} > out.txt
assemblies:
  main:
    nodes:
      n:
        components: [app]
"#;
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = module_dir(tmp.path(), "nov", NOV);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/say"), "#!/bin/sh\necho \"$1\"\n").unwrap();
    std::fs::write(dir.join("NOTES"), "first\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("bin/say"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = home.run(&["module", "install", dir.to_str().unwrap()]);
    installed.ok();
    assert!(
        installed.stdout.contains("test/nov master"),
        "{installed:?}"
    );
    home.run(&["service", "stage", "test/nov", "main", "-n", "s"])
        .ok();
    let repo = home.service_dir("s");
    assert!(read(&repo.join("dtk.service.yaml")).contains("test/nov: master"));
    home.run(&["service", "converge", "s"]).ok();
    let out = home.module_sandbox("s", "n", "test/nov").join("out.txt");
    assert_eq!(read(&out), "one\n");

    // The instance edits its copy of the script; the module's `master` moves on.
    let say = repo.join("modules/test/nov/bin/say");
    std::fs::write(&say, "#!/bin/sh\necho \"[$1]\"\n").unwrap();
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(read(&out), "[one]\n");
    std::fs::write(
        dir.join("dtk.module.yaml"),
        NOV.replace("default: one", "default: two"),
    )
    .unwrap();
    std::fs::write(dir.join("NOTES"), "second\n").unwrap();
    home.run(&["module", "install", dir.to_str().unwrap()]).ok();
    let copy = repo.join("modules/test/nov/dtk.module.yaml");
    assert!(
        read(&copy).contains("default: one"),
        "the staged copy stays"
    );

    let pulled = home.run(&["service", "pull-base", "s"]);
    pulled.ok();
    assert!(!pulled.stdout.contains("already at"), "{pulled:?}");
    assert!(read(&copy).contains("default: two"), "{}", read(&copy));
    assert_eq!(read(&say), "#!/bin/sh\necho \"[$1]\"\n", "the edit is kept");
    assert!(read(&repo.join("dtk.service.yaml")).contains("test/nov: master"));
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(read(&out), "[two]\n");
    // Nothing new: a second pull-base has nothing to do.
    let again = home.run(&["service", "pull-base", "s"]);
    again.ok();
    assert!(again.stdout.contains("already at"), "{again:?}");
    home.fsck_all();
}

/// A module copy on an SSH node: the node's creation tells dtk it holds no copy, so the
/// first action sends the files without asking; an edited file is sent again and a deleted
/// one removed from the node, the manifest last.
#[test]
fn module_files_reach_an_ssh_node_and_edits_and_removals_follow() {
    use dtk_tests::sshd::{Sshd, current_user};
    let home = CliHome::new();
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known);
    let workdir = tmp.path().join("nodes");
    home.run(&[
        "service", "stage", "dtk/ssh", "target", "--base", "-n", "hosts",
    ])
    .ok();
    let set = |path: &str, value: &str| {
        home.run(&["service", "set-attribute", "hosts", path, value])
            .ok();
    };
    set(
        "inventory/hosts",
        &format!(
            "[{{name: h1, address: 127.0.0.1, port: {}, workdir: {}}}]",
            sshd.port(),
            workdir.display()
        ),
    );
    set("inventory/user", &current_user());
    set(
        "inventory/private_key_path",
        sshd.user_key().to_str().unwrap(),
    );
    set("inventory/known_hosts_path", known.to_str().unwrap());
    home.run(&["service", "converge", "hosts"]).ok();

    let m = module_dir(
        tmp.path(),
        "shipped",
        r#"dsl_version: 1.0.0
module: test/shipped
version: 1.0.0
component_defs:
  app:
    actions:
      create:
        commands:
        - RUN ./bin/hello > hello.txt && cat data.txt > copy.txt && ls > listing.txt
assemblies:
  one:
    components:
    - node[web]:
        components: [app]
"#,
    );
    std::fs::create_dir_all(m.join("bin")).unwrap();
    let hello = m.join("bin/hello");
    std::fs::write(&hello, "#!/bin/sh\necho hello\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(m.join("data.txt"), "data\n").unwrap();
    std::fs::write(m.join("old.txt"), "to be removed\n").unwrap();
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    home.run(&[
        "service",
        "stage",
        "test/shipped",
        "one",
        "-n",
        "s",
        "--target",
        "hosts",
    ])
    .ok();
    home.run(&["service", "converge", "s"]).ok();
    let copy = workdir.join("s/web/modules/test/shipped");
    assert_eq!(read(&copy.join("hello.txt")), "hello\n");
    assert_eq!(read(&copy.join("copy.txt")), "data\n");
    assert!(read(&copy.join("listing.txt")).contains("old.txt"));
    let manifest = workdir.join("s/web/modules/test/.shipped.manifest");
    assert!(read(&manifest).contains("old.txt"));

    // An edited script and a removed file: the node's copy follows.
    let edited = home.service_dir("s").join("modules/test/shipped");
    std::fs::write(edited.join("bin/hello"), "#!/bin/sh\necho bonjour\n").unwrap();
    std::fs::remove_file(edited.join("old.txt")).unwrap();
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(read(&copy.join("hello.txt")), "bonjour\n");
    assert!(!copy.join("old.txt").exists(), "the removed file is gone");
    assert!(!read(&copy.join("listing.txt")).contains("old.txt"));
    let manifest = read(&manifest);
    assert!(!manifest.contains("old.txt"), "{manifest}");
    assert!(manifest.contains("bin/hello"), "{manifest}");
}
