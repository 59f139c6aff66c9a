//! Day-2 operations on the AWS target, through the `dtk` binary against moto: a VPC made
//! outside dtk imported into a target; an instance stopped, then resized, outside dtk
//! (refresh shows the drift, converge restores it in place), retagged and put in another
//! security group outside dtk (the same); a size changed in the desired
//! state (in place) and an image changed (a replacement); an instance made outside dtk
//! imported into a node (repaired, never launched twice, left alone by delete); a VPC
//! imported with `--adopt` (deleted with its target).

use std::time::Instant;

use serde_json::Value;

use super::ec2::{Ec2View, service};
use super::{Cli, app_module, elapsed, moto, out, stage_app, stage_target};

/// The tasks of a plan: id → reason.
fn plan(cli: &Cli, name: &str) -> Vec<(String, String)> {
    cli.plan(name)
}

/// The drift lines of `dtk service refresh NAME`: component → (status, changed attributes).
fn refresh(cli: &Cli, name: &str) -> Vec<(String, String, Vec<String>)> {
    let doc = cli.json(&["service", "refresh", name]);
    doc["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["component"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {} -> {}",
                            c["attribute"].as_str().unwrap(),
                            c["expected"],
                            c["observed"]
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn aws_day_two_drift_resize_replace_import() {
    let start = Instant::now();
    let moto = moto();
    let region = "ap-south-1";
    let view = Ec2View::new(&moto.url(), region);
    let cli = Cli::new(&moto.url(), region);
    let ami = view.image_named(
        "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-*",
        "099720109477",
    );
    let other_ami = view.image_named(
        "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-*",
        "099720109477",
    );
    assert_ne!(ami, other_ami);

    // A VPC made outside dtk, imported into the target (not adopted): dtk makes the
    // subnet and group in it, and never makes a VPC of its own.
    let theirs = view.create_vpc("10.40.0.0/16", "theirs");
    stage_target(
        &cli,
        "target_iam",
        "net5",
        region,
        &format!("{{'*': {{ubuntu_jammy: {{ami: {ami}, sizes: {{small: t3.small}}}}}}}}"),
    );
    let imported = cli.json(&["service", "import", "net5", "vpc[vpc1]", &theirs]);
    assert_eq!(imported["component"], "vpc[vpc1]", "{imported:#}");
    assert_eq!(imported["adopt"], false);
    assert_eq!(imported["outputs"]["vpc_id"], theirs.as_str());
    assert_eq!(imported["outputs"]["cidr_block"], "10.40.0.0/16");
    let p = plan(&cli, "net5");
    assert!(
        !p.iter().any(|(id, _)| id.starts_with("vpc[vpc1]")),
        "the imported VPC is not made again: {p:?}"
    );
    // Importing it twice is refused.
    let again = cli
        .run(&["service", "import", "net5", "vpc[vpc1]", &theirs])
        .refused();
    assert!(
        again.stderr.contains("already deployed"),
        "{}",
        again.stderr
    );
    let vpcs_before = view.inventory().vpcs;
    cli.converge("net5");
    assert_eq!(view.inventory().vpcs, vpcs_before, "no VPC was made");
    let o = cli.outputs("net5");
    let subnet_id = out(&o, "vpc_subnet[vpc1-default]", "subnet_id").to_owned();
    assert_eq!(view.subnet(&subnet_id).vpc_id, theirs);
    elapsed("day2: target on an imported VPC", start);

    // The app: web alone (no workers).
    cli.ok(&["module", "install", &app_module()]);
    stage_app(&cli, "app5", "net5");
    cli.set("app5", "workers/cardinality", "1");
    cli.converge("app5");
    let o = cli.outputs("app5");
    let web = out(&o, "node[web]", "instance_id").to_owned();
    assert_eq!(view.instance(&web).instance_type, "t3.small");

    // Stopped outside dtk: refresh says so, plan shows drift, converge starts it again.
    view.stop(&web);
    let drift = refresh(&cli, "app5");
    assert!(
        drift.iter().any(|(c, s, ch)| c == "node[web]"
            && s == "drifted"
            && ch
                .iter()
                .any(|x| x.starts_with("state: \"running\" -> \"stopped\""))),
        "{drift:?}"
    );
    assert_eq!(
        view.instance(&web).state,
        "stopped",
        "refresh changes nothing"
    );
    let p = plan(&cli, "app5");
    assert!(
        p.contains(&("node[web].create".to_owned(), "drift".to_owned())),
        "{p:?}"
    );
    let ran = cli.converge_json("app5");
    assert!(ran.contains("node[web].create"), "{ran:?}");
    assert_eq!(view.instance(&web).state, "running");
    assert_eq!(
        out(&cli.outputs("app5"), "node[web]", "instance_id"),
        web,
        "started, not replaced"
    );
    assert!(refresh(&cli, "app5").is_empty(), "no drift left");

    // Resized outside dtk: converge sets the type back (stop, modify, start).
    view.resize(&web, "t3.large");
    let drift = refresh(&cli, "app5");
    assert!(
        drift.iter().any(|(c, _, ch)| c == "node[web]"
            && ch
                .iter()
                .any(|x| x == "instance_type: \"t3.small\" -> \"t3.large\"")),
        "{drift:?}"
    );
    cli.converge("app5");
    let i = view.instance(&web);
    assert_eq!(
        (i.state.as_str(), i.instance_type.as_str()),
        ("running", "t3.small")
    );

    // Retagged and put in another security group outside dtk: both are drift, repaired
    // in place (the same instance).
    let i = view.instance(&web);
    let groups = i.groups.clone();
    let elsewhere = view.create_group(&i.vpc_id, "elsewhere", 8080);
    view.retag(&web, "team", "someone-else");
    view.set_groups(&web, &[elsewhere.as_str()]);
    assert_eq!(view.instance(&web).groups, std::slice::from_ref(&elsewhere));
    let drift = refresh(&cli, "app5");
    let changed: Vec<&String> = drift
        .iter()
        .filter(|(c, s, _)| c == "node[web]" && s == "drifted")
        .flat_map(|(_, _, ch)| ch)
        .collect();
    assert!(
        changed
            .contains(&&"tags: {\"team\":\"dtk-tests\"} -> {\"team\":\"someone-else\"}".to_owned()),
        "{drift:?}"
    );
    assert!(
        changed
            .iter()
            .any(|x| x.starts_with("security_groups: ") && x.contains(&elsewhere)),
        "{drift:?}"
    );
    let ran = cli.converge_json("app5");
    assert!(ran.contains("node[web].create"), "{ran:?}");
    let i = view.instance(&web);
    assert_eq!(i.tags.get("team").map(String::as_str), Some("dtk-tests"));
    assert_eq!(i.groups, groups);
    assert_eq!(out(&cli.outputs("app5"), "node[web]", "instance_id"), web);
    assert!(refresh(&cli, "app5").is_empty(), "no drift left");

    // A size changed in the desired state: changed in place, the same instance.
    cli.set("app5", "web/size", "t3.medium");
    let p = plan(&cli, "app5");
    assert!(
        p.contains(&("node[web].create".to_owned(), "changed".to_owned())),
        "{p:?}"
    );
    cli.converge("app5");
    assert_eq!(view.instance(&web).instance_type, "t3.medium");
    assert_eq!(out(&cli.outputs("app5"), "node[web]", "instance_id"), web);

    // An image changed: the provider cannot change it in place, so the plan replaces the
    // instance, and says why.
    cli.set("app5", "web/image", &other_ami);
    let p = plan(&cli, "app5");
    let replace = p
        .iter()
        .find(|(id, _)| id == "node[web].delete")
        .unwrap_or_else(|| panic!("a replacement: {p:?}"));
    assert!(
        replace.1.starts_with("replace (`image` changes"),
        "{replace:?}"
    );
    cli.converge("app5");
    let new_web = out(&cli.outputs("app5"), "node[web]", "instance_id").to_owned();
    assert_ne!(new_web, web);
    assert_eq!(view.instance(&web).state, "terminated");
    assert_eq!(view.instance(&new_web).image_id, other_ami);
    assert!(cli.plan("app5").is_empty());
    elapsed("day2: drift, resize, replace", start);

    // An instance made outside dtk, of another type, imported into a second app's web
    // node: the import shows the difference, converge repairs it in place and launches
    // no other instance for web; delete leaves it running.
    let outside = view.launch(&ami, &subnet_id, "t3.nano", "made-outside");
    stage_app(&cli, "app6", "net5");
    cli.set("app6", "workers/cardinality", "1");
    let imported = cli.json(&["service", "import", "app6", "node[web]", &outside]);
    assert_eq!(imported["status"], "drifted", "{imported:#}");
    let changes: Vec<&Value> = imported["changes"].as_array().unwrap().iter().collect();
    assert!(
        changes.iter().any(|c| c["attribute"] == "instance_type"
            && c["expected"] == "t3.small"
            && c["observed"] == "t3.nano"),
        "{imported:#}"
    );
    let p = plan(&cli, "app6");
    assert!(
        p.contains(&("node[web].create".to_owned(), "drift".to_owned())),
        "{p:?}"
    );
    cli.converge("app6");
    let i = view.instance(&outside);
    assert_eq!(
        (i.state.as_str(), i.instance_type.as_str()),
        ("running", "t3.small")
    );
    let webs: Vec<_> = view
        .instances(vec![service("app6")])
        .into_iter()
        .filter(|i| i.tags.get("dtk:node").map(String::as_str) == Some("web"))
        .collect();
    assert!(webs.is_empty(), "no instance launched for web: {webs:#?}");
    assert_eq!(
        out(&cli.outputs("app6"), "node[web]", "instance_id"),
        outside
    );
    assert!(!i.tags.contains_key("dtk:managed"), "not adopted: {i:?}");
    cli.ok(&["service", "delete", "app6"]);
    assert_eq!(
        view.instance(&outside).state,
        "running",
        "an import without --adopt is never deleted"
    );
    let runs = cli.json(&["service", "runs", "app6"]);
    let kinds: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["delete", "converge", "import"]);
    elapsed("day2: imported instance", start);

    // Delete app and target: the imported VPC stays, with nothing of dtk's in it.
    cli.ok(&["service", "delete", "app5"]);
    for app in ["app5", "app6"] {
        cli.ok(&["service", "uninstall", app]);
    }
    cli.ok(&["service", "delete", "net5"]);
    assert!(view.vpc(&theirs).is_some(), "not adopted: kept");
    assert!(view.inventory_of("net5").subnets.is_empty());

    // A VPC imported with --adopt is the target's: deleted with it.
    let adopted = view.create_vpc("10.41.0.0/16", "adopted");
    stage_target(
        &cli,
        "target_iam",
        "net6",
        region,
        &format!("{{'*': {{ubuntu_jammy: {{ami: {ami}}}}}}}"),
    );
    let imported = cli.json(&[
        "service",
        "import",
        "net6",
        "vpc[vpc1]",
        &adopted,
        "--adopt",
    ]);
    assert_eq!(imported["adopt"], true);
    cli.converge("net6");
    let (_, tags) = view.vpc(&adopted).unwrap();
    assert_eq!(tags.get("dtk:service").map(String::as_str), Some("net6"));
    cli.ok(&["service", "delete", "net6"]);
    assert!(
        view.vpc(&adopted).is_none(),
        "adopted: deleted with the target"
    );
    elapsed("day2: adopted VPC", start);
}
