//! The AWS target end to end, through the real `dtk` binary, against a real EC2 API
//! server (moto, started on 127.0.0.1 by [`Moto::shared`]; never AWS itself).
//!
//! Each test has a `DTK_HOME` of its own and works in a region of its own on the shared
//! server, so the tests run in parallel without seeing each other. Every check of what
//! exists is made through a plain SDK client ([`ec2::Ec2View`]), not through dtk. One
//! test per network scenario of `aws/network`:
//!
//! - nothing given: dtk creates the VPC, subnet, internet gateway, route and group (a
//!   first converge killed midway, the next adopting what it made); the full app flow
//!   runs on it (converge, scale up and down, drift, key rotation, delete, uninstall);
//! - an existing VPC (and `target_iam`, an image found by a name filter): dtk creates a
//!   subnet (by length) and a named group in it; an app converge killed once its first
//!   instance is launched, run again, leaves one instance per node;
//! - an existing subnet and group: used as they are, never changed nor deleted.
//!
//! After each flow, no secret value (the target's keys, the environment's keys) may be
//! in any file under `DTK_HOME` but the secret stores, in any git object, or in anything
//! a `dtk` run printed; an error (a wrong endpoint) must not show them either.

mod day2;
mod ec2;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use dtk_target_aws::testing::Moto;
use dtk_tests::dtk::{Dtk, Run};
use dtk_tests::secrets::{Leak, leaks_in_home, leaks_in_text};
use serde_json::Value;

use self::ec2::{Ec2View, filter, service};

/// The keys in the child's environment (the default chain `target_iam` uses). Fake:
/// the endpoint is always moto.
const ENV_ACCESS_KEY_ID: &str = "AKIADTKE2EENVKEY0001";
const ENV_SECRET_ACCESS_KEY: &str = "e2e-env-secret-access-key-KOALA";

/// The paths under `DTK_HOME` allowed to hold secrets: dtk's secret store and the AWS
/// provider's credential store.
const SECRET_STORES: &[&str] = &["secrets", "providers/aws/credentials"];

/// The test app: `node[web]` and `node_group[workers]` with components that run nothing.
fn app_module() -> String {
    dtk_tests::workspace()
        .join("tests/fixtures/aws_app")
        .display()
        .to_string()
}

/// The `dtk-provider-aws` plugin must be beside the `dtk` binary, where `dtk` finds it and
/// where `cargo build --workspace` puts it; without it every test would fail at stage time.
fn aws_plugin_is_built() {
    let plugin = dtk_tests::dtk::dtk_binary().with_file_name("dtk-provider-aws");
    assert!(
        plugin.is_file(),
        "{} is not built: run ./scripts/test, or `cargo build -p dtk-cli -p dtk-target-aws` first",
        plugin.display()
    );
}

/// `dtk` against a home of its own, pointed at moto, every run's output kept for the
/// secrets check.
struct Cli {
    dtk: Dtk,
    endpoint: String,
    region: String,
    transcript: RefCell<Vec<(String, String)>>,
}

impl Cli {
    fn new(endpoint: &str, region: &str) -> Cli {
        aws_plugin_is_built();
        Cli {
            dtk: Dtk::new(),
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            transcript: RefCell::new(Vec::new()),
        }
    }

    /// Runs `dtk ARGS` with only moto to talk to: the endpoint, the region and fake
    /// environment keys set; profiles, config files and instance metadata out of reach.
    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("dtk runs");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.keep(args, &run.stdout, &run.stderr);
        run
    }

    /// Keeps what a run printed, for the secrets check.
    fn keep(&self, args: &[&str], stdout: &str, stderr: &str) {
        let label = format!("dtk {}", args.join(" "));
        let mut t = self.transcript.borrow_mut();
        t.push((format!("stdout of {label}"), stdout.to_owned()));
        t.push((format!("stderr of {label}"), stderr.to_owned()));
    }

    /// The command `dtk ARGS`, environment set as for [`Cli::run`].
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.dtk.command(args);
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            c.env_remove(k);
        }
        let nowhere = self.dtk.home().join("no-aws-config");
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", &self.region)
            .env("AWS_ACCESS_KEY_ID", ENV_ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", ENV_SECRET_ACCESS_KEY)
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    /// Starts `dtk ARGS` and kills it (SIGKILL) as soon as `now` says so (or it ends by
    /// itself); keeps what it printed. Returns whether it was killed.
    fn killed_when(&self, args: &[&str], mut now: impl FnMut() -> bool) -> bool {
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dtk starts");
        let start = Instant::now();
        let killed = loop {
            if child.try_wait().expect("dtk can be waited for").is_some() {
                break false;
            }
            if now() {
                break child.kill().is_ok();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "dtk {args:?} neither ended nor reached the moment to kill it"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = child.wait_with_output().expect("dtk is reaped");
        self.keep(
            args,
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        );
        killed
    }

    fn ok(&self, args: &[&str]) -> Run {
        self.run(args).ok()
    }

    /// `dtk --json ARGS`, which must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }

    fn set(&self, service: &str, path: &str, value: &str) {
        self.ok(&["service", "set-attribute", service, path, value]);
    }

    /// Converges `service` (human output), which must succeed.
    fn converge(&self, service: &str) -> Run {
        let run = self.ok(&["service", "converge", service]);
        assert!(
            run.stdout.contains("succeeded"),
            "converge of {service}:\n{}",
            run.stdout
        );
        run
    }

    /// Converges `service` with `--json`; returns the ids of the tasks that ran (done).
    fn converge_json(&self, service: &str) -> BTreeSet<String> {
        let doc = self.json(&["service", "converge", service]);
        assert_eq!(doc["status"], "succeeded", "{doc:#}");
        doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "done")
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The planned tasks of `service`: id → reason.
    fn plan(&self, service: &str) -> Vec<(String, String)> {
        let doc = self.json(&["service", "plan", service]);
        doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The outputs of every component of `service`, by component id.
    fn outputs(&self, service: &str) -> std::collections::BTreeMap<String, Value> {
        let doc = self.json(&["service", "status", service]);
        doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), c["outputs"].clone()))
            .collect()
    }

    /// Everything under the home and every run's output, searched for `secrets`.
    fn leaks(&self, secrets: &[&str]) -> Vec<Leak> {
        let mut leaks = leaks_in_home(self.dtk.home(), secrets, SECRET_STORES);
        for (label, text) in self.transcript.borrow().iter() {
            leaks.extend(leaks_in_text(label, text.as_bytes(), secrets));
        }
        leaks
    }

    /// Fails unless `secret` is in the home's secret stores: proves that the search looks
    /// where the secrets are.
    fn assert_stored(&self, secret: &str) {
        assert!(
            !leaks_in_home(self.dtk.home(), &[secret], &[]).is_empty(),
            "the secret is not in the stores of {}: the search would prove nothing",
            self.dtk.home().display()
        );
    }

    /// Fails when a secret shows anywhere it must not (the secret itself is not printed).
    fn assert_no_leaks(&self, secrets: &[&str]) {
        let leaks = self.leaks(secrets);
        assert!(
            leaks.is_empty(),
            "secret values (by position in the list) found where they must never be:\n{}",
            leaks
                .iter()
                .map(|l| format!("  secret #{} in {}", l.secret, l.place))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A string output of a component.
fn out<'a>(outputs: &'a std::collections::BTreeMap<String, Value>, c: &str, k: &str) -> &'a str {
    outputs
        .get(c)
        .and_then(|o| o[k].as_str())
        .unwrap_or_else(|| panic!("no output {c}/{k} in {outputs:#?}"))
}

/// Stages `aws/network ASSEMBLY` as target `name` in `region`, with the image map `images`
/// (YAML).
fn stage_target(cli: &Cli, assembly: &str, name: &str, region: &str, images: &str) {
    let staged = cli.ok(&[
        "service",
        "stage",
        "aws/network",
        assembly,
        "-n",
        name,
        "--base",
    ]);
    assert!(staged.stdout.contains(name), "{}", staged.stdout);
    cli.set(name, "vpc[vpc1]/region", region);
    cli.set(name, "images/images", images);
}

/// Stages the test app on `target` as `name`.
fn stage_app(cli: &Cli, name: &str, target: &str) {
    cli.ok(&[
        "service",
        "stage",
        "test/aws_app",
        "app",
        "-n",
        name,
        "--target",
        target,
    ]);
}

/// Checks that every instance of `app` runs in `subnet` with `group`, with dtk's tags.
fn check_app_instances(view: &Ec2View, app: &str, subnet: &str, group: &str) {
    let vpc = view.subnet(subnet).vpc_id;
    for i in view.instances(vec![service(app)]) {
        assert_eq!(i.state, "running", "{i:?}");
        assert_eq!(i.subnet_id, subnet, "{i:?}");
        assert_eq!(i.vpc_id, vpc, "{i:?}");
        assert_eq!(i.groups, vec![group.to_owned()], "{i:?}");
        assert_eq!(i.tags["dtk:managed"], "true", "{i:?}");
        assert_eq!(i.tags["dtk:service"], app, "{i:?}");
        assert!(i.tags.contains_key("dtk:node"), "{i:?}");
        assert!(i.tags.contains_key("Name"), "{i:?}");
    }
}

fn elapsed(what: &str, since: Instant) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{what}: {:.1}s", since.elapsed().as_secs_f64());
    }
}

fn moto() -> Arc<Moto> {
    Moto::shared()
}

/// Nothing given: dtk creates the whole network. The app flow runs on it: converge,
/// scale up, scale down, an instance terminated outside dtk (drift), rotated keys,
/// delete of the app then of the target; nothing dtk made remains, the default VPC is
/// untouched, and no secret shows anywhere.
#[test]
fn aws_created_network_app_scale_drift_rotate_delete() {
    let start = Instant::now();
    let moto = moto();
    let region = "eu-west-1";
    let view = Ec2View::new(&moto.url(), region);
    let cli = Cli::new(&moto.url(), region);
    let default_vpc = view.default_vpc();
    let before = view.inventory();
    let ami = view.image_named(
        "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-*",
        "099720109477",
    );
    let (key_id, secret_key) = ("AKIADTKE2EFLOWKEY001", "e2e-flow-secret-key-ZEBRA-0001");
    let (key_id2, secret_key2) = ("AKIADTKE2EFLOWKEY002", "e2e-flow-secret-key-YAK-0002");

    // The target: explicit keys as secrets, a literal image map, one more rule.
    stage_target(
        &cli,
        "target",
        "aws1",
        region,
        &format!("{{'*': {{ubuntu_jammy: {{ami: {ami}, sizes: {{small: t3.small}}}}}}}}"),
    );
    let set_key = cli.ok(&[
        "service",
        "set-attribute",
        "aws1",
        "credentials/aws_access_key_id",
        key_id,
    ]);
    assert!(set_key.stdout.contains("secret"), "{}", set_key.stdout);
    cli.set("aws1", "credentials/aws_secret_access_key", secret_key);
    cli.set(
        "aws1",
        "security_group[vpc1-default]/dynamic_rules",
        "[{protocol: tcp, port_range: '80', source: 0.0.0.0/0}]",
    );
    // The key pair of the instances, and the private key's path for SSH (only its path).
    view.create_key_pair("e2e-keys");
    cli.set("aws1", "vpc[vpc1]/default_keypair", "e2e-keys");
    cli.set("aws1", "vpc[vpc1]/ssh_key_path", "/keys/e2e-keys.pem");
    let plan = cli.plan("aws1");
    assert_eq!(plan.len(), 5, "{plan:?}");
    assert!(plan.iter().all(|(_, r)| r == "new"), "{plan:?}");
    // Killed once its VPC exists (the keys stored, the journal of the run left behind):
    // no key in what it leaves either. The next converge adopts the VPC and goes on.
    let killed = cli.killed_when(&["service", "converge", "aws1"], || {
        !view.inventory_of("aws1").vpcs.is_empty()
    });
    let journals = std::fs::read_dir(cli.dtk.service_dir("aws1").join(".dtk/journal"))
        .map(|d| d.count())
        .unwrap_or(0);
    #[allow(clippy::print_stderr)]
    {
        eprintln!("target converge killed: {killed}, leaving {journals} journals");
    }
    cli.assert_no_leaks(&[key_id, secret_key]);
    cli.converge("aws1");
    assert_eq!(
        view.inventory_of("aws1").vpcs.len(),
        1,
        "the VPC of the killed run is adopted"
    );
    elapsed("target converged", start);

    // EC2's view of the network.
    let o = cli.outputs("aws1");
    let vpc_id = out(&o, "vpc[vpc1]", "vpc_id");
    let subnet_id = out(&o, "vpc_subnet[vpc1-default]", "subnet_id");
    let group_id = out(&o, "security_group[vpc1-default]", "group_id");
    assert_eq!(
        out(&o, "credentials", "credentials_handle"),
        "aws1/credentials"
    );
    assert_eq!(out(&o, "vpc[vpc1]", "cidr_block"), "10.0.0.0/16");
    assert_eq!(out(&o, "vpc[vpc1]", "region"), region);
    let (cidr, tags) = view.vpc(vpc_id).expect("the VPC exists");
    assert_eq!(cidr, "10.0.0.0/16");
    assert_eq!(tags["dtk:service"], "aws1");
    assert_eq!(tags["dtk:component"], "vpc[vpc1]");
    assert_eq!(tags["dtk:managed"], "true");
    let subnet = view.subnet(subnet_id);
    assert_eq!(subnet.vpc_id, vpc_id);
    assert_eq!(
        subnet.cidr,
        out(&o, "vpc_subnet[vpc1-default]", "subnet_cidr_block")
    );
    assert!(subnet.cidr.starts_with("10.0."), "{subnet:?}");
    assert_eq!(
        subnet.availability_zone,
        out(&o, "vpc_subnet[vpc1-default]", "availability_zone")
    );
    assert!(subnet.public_ip_on_launch, "gateway: internet: {subnet:?}");
    assert_eq!(subnet.tags["dtk:service"], "aws1");
    let gateways = view.gateways(vec![filter("attachment.vpc-id", vpc_id)]);
    assert_eq!(gateways.len(), 1, "{gateways:?}");
    let (igw, _, igw_tags) = &gateways[0];
    assert_eq!(igw_tags["dtk:service"], "aws1");
    let routes = view.subnet_routes(subnet_id);
    assert_eq!(
        routes.len(),
        1,
        "one route table for the subnet: {routes:?}"
    );
    assert!(
        routes[0].0.contains(&format!("0.0.0.0/0 -> {igw}")),
        "{routes:?}"
    );
    assert_eq!(routes[0].1["dtk:service"], "aws1");
    let group = view.group(group_id);
    assert_eq!(group.vpc_id, vpc_id);
    assert_eq!(group.tags["dtk:service"], "aws1");
    assert!(
        group.rules.contains(&"tcp 22-22 0.0.0.0/0".to_owned()),
        "{group:?}"
    );
    assert!(
        group.rules.contains(&"tcp 80-80 0.0.0.0/0".to_owned()),
        "{group:?}"
    );
    assert!(
        group
            .rules
            .iter()
            .any(|r| r.starts_with("-1 ") && r.ends_with(group_id)),
        "SAME: the group itself: {group:?}"
    );
    let images = &o["images"]["images"][region]["ubuntu_jammy"];
    assert_eq!(images["ami"], ami.as_str(), "{images}");

    // Converging again changes nothing.
    assert!(cli.converge_json("aws1").is_empty());
    let target_made = view.inventory();

    // The app: web and two workers become instances.
    cli.ok(&["module", "install", &app_module()]);
    stage_app(&cli, "app1", "aws1");
    let ran = cli.converge_json("app1");
    assert!(ran.contains("node[web].create"), "{ran:?}");
    let instances = view.instances(vec![service("app1")]);
    assert_eq!(instances.len(), 3, "{instances:#?}");
    check_app_instances(&view, "app1", subnet_id, group_id);
    let o = cli.outputs("app1");
    let web_id = out(&o, "node[web]", "instance_id").to_owned();
    let web = instances.iter().find(|i| i.id == web_id).expect("web runs");
    assert_eq!(web.image_id, ami);
    assert_eq!(web.instance_type, "t3.small");
    assert_eq!(web.tags["dtk:node"], "web");
    assert_eq!(web.tags["team"], "dtk-tests", "the node's own tags");
    assert_eq!(web.key_name.as_deref(), Some("e2e-keys"));
    assert_eq!(out(&o, "node[web]", "state"), "running");
    // What runs the node's commands over SSH finds how in its outputs.
    assert_eq!(
        out(&o, "node[web]", "ssh_host"),
        out(&o, "node[web]", "public_ip_address")
    );
    assert_eq!(out(&o, "node[web]", "ssh_user"), "ubuntu");
    assert_eq!(out(&o, "node[web]", "ssh_key_path"), "/keys/e2e-keys.pem");
    assert_eq!(out(&o, "node[web]", "ssh_host_key_policy"), "tofu");
    assert_eq!(out(&o, "node[web]", "image_id"), ami);
    assert!(!out(&o, "node[web]", "private_ip_address").is_empty());
    assert!(!out(&o, "node[web]", "public_ip_address").is_empty());
    let workers: Vec<_> = instances
        .iter()
        .filter(|i| i.tags["dtk:node"] == "workers")
        .collect();
    assert_eq!(workers.len(), 2);
    for w in &workers {
        assert_eq!(w.instance_type, "t3.micro", "a literal type: {w:?}");
    }
    let indexes: BTreeSet<&str> = workers
        .iter()
        .map(|w| w.tags["dtk:index"].as_str())
        .collect();
    assert_eq!(indexes, BTreeSet::from(["1", "2"]));
    elapsed("app converged", start);

    // Raise the group: two more; lower it: the extras are terminated.
    cli.set("app1", "workers/cardinality", "4");
    cli.converge("app1");
    assert_eq!(view.instances(vec![service("app1")]).len(), 5);
    check_app_instances(&view, "app1", subnet_id, group_id);
    let o = cli.outputs("app1");
    let extra: Vec<String> = (2..=4)
        .map(|i| out(&o, &format!("node[workers:{i}]"), "instance_id").to_owned())
        .collect();
    cli.set("app1", "workers/cardinality", "1");
    let plan = cli.plan("app1");
    for i in 2..=4 {
        assert!(
            plan.iter()
                .any(|(id, _)| id == &format!("node[workers:{i}].delete")),
            "{plan:?}"
        );
    }
    cli.converge("app1");
    let left = view.instances(vec![service("app1")]);
    assert_eq!(left.len(), 2, "{left:#?}");
    for id in &extra {
        assert_eq!(view.instance_state(id), "terminated", "{id}");
    }
    elapsed("scaled", start);

    // Drift: web terminated outside dtk; plan shows it, converge makes it again.
    view.terminate(&web_id);
    let plan = cli.plan("app1");
    assert!(
        plan.contains(&("node[web].create".to_owned(), "drift".to_owned())),
        "{plan:?}"
    );
    let human = cli.ok(&["service", "plan", "app1"]);
    assert!(human.stdout.contains("drift"), "{}", human.stdout);
    let ran = cli.converge_json("app1");
    assert!(ran.contains("node[web].create"), "{ran:?}");
    let o = cli.outputs("app1");
    let new_web = out(&o, "node[web]", "instance_id");
    assert_ne!(new_web, web_id);
    let live = view.instances(vec![service("app1")]);
    assert_eq!(live.len(), 2, "{live:#?}");
    assert!(live.iter().any(|i| i.id == new_web));
    assert!(cli.plan("app1").is_empty(), "converged: nothing left to do");
    elapsed("drift repaired", start);

    // Rotated keys: the credentials component runs again (its secrets' digest changed;
    // the provider stores the new keys); the rest would run only if its outputs changed,
    // and they do not.
    cli.set("aws1", "credentials/aws_access_key_id", key_id2);
    cli.set("aws1", "credentials/aws_secret_access_key", secret_key2);
    let plan = cli.plan("aws1");
    assert!(
        plan.contains(&("credentials.create".to_owned(), "changed".to_owned())),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .all(|(id, r)| id == "credentials.create" || r.starts_with("if inputs change")),
        "only the credentials run for sure: {plan:?}"
    );
    let ran = cli.converge_json("aws1");
    assert_eq!(ran, BTreeSet::from(["credentials.create".to_owned()]));
    assert!(cli.plan("aws1").is_empty());
    assert!(cli.plan("app1").is_empty());

    // Delete the app, then the target: nothing dtk made remains.
    cli.ok(&["service", "delete", "app1"]);
    assert!(view.instances(vec![service("app1")]).is_empty());
    assert_eq!(
        view.inventory(),
        target_made_without_instances(&target_made)
    );
    let deleted = cli.json(&["service", "delete", "aws1"]);
    assert_eq!(deleted["status"], "succeeded", "{deleted:#}");
    let after = view.inventory();
    assert_eq!(after, before, "the region is as it was before the flow");
    assert!(after.vpcs.contains(&default_vpc));
    assert!(view.vpc(vpc_id).is_none());
    elapsed("deleted", start);
    cli.assert_stored(secret_key2);
    cli.assert_no_leaks(&[
        key_id,
        secret_key,
        key_id2,
        secret_key2,
        ENV_ACCESS_KEY_ID,
        ENV_SECRET_ACCESS_KEY,
    ]);

    // Uninstalled, the target leaves no key behind, not even in the stores.
    cli.ok(&["service", "uninstall", "app1"]);
    cli.ok(&["service", "uninstall", "aws1"]);
    assert!(
        leaks_in_home(cli.dtk.home(), &[key_id2, secret_key2], &[]).is_empty(),
        "keys left under the home after uninstall"
    );
}

fn target_made_without_instances(inv: &ec2::Inventory) -> ec2::Inventory {
    let mut inv = inv.clone();
    inv.live_instances.clear();
    inv
}

/// An existing VPC (with a subnet of its own): dtk adds a subnet of the length asked for
/// in a free block and a group of the name asked for, with the default credential chain
/// (`target_iam`) and an image found by a name filter; delete removes only those.
#[test]
fn aws_existing_vpc_gets_subnet_by_length_and_named_group() {
    let start = Instant::now();
    let moto = moto();
    let region = "eu-west-2";
    let view = Ec2View::new(&moto.url(), region);
    let cli = Cli::new(&moto.url(), region);
    let vpc_id = view.create_vpc("10.20.0.0/16", "made-outside");
    let taken = view.create_subnet(&vpc_id, "10.20.0.0/24", "taken");
    let before = view.inventory();
    let pattern = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*";
    let ami = view.image_named(pattern, "099720109477");

    stage_target(
        &cli,
        "target_iam",
        "net2",
        region,
        &format!(
            "{{'*': {{ubuntu_jammy: {{name_filter: '{pattern}', owners: ['099720109477']}}}}}}"
        ),
    );
    cli.set("net2", "vpc[vpc1]/vpc_id", &vpc_id);
    cli.set("net2", "vpc_subnet[vpc1-default]/subnet_length", "26");
    cli.set("net2", "security_group[vpc1-default]/group_name", "e2e-web");
    cli.converge("net2");

    let o = cli.outputs("net2");
    assert_eq!(out(&o, "vpc[vpc1]", "vpc_id"), vpc_id);
    assert_eq!(out(&o, "vpc[vpc1]", "cidr_block"), "10.20.0.0/16");
    let subnet_id = out(&o, "vpc_subnet[vpc1-default]", "subnet_id");
    assert_ne!(subnet_id, taken);
    let subnet = view.subnet(subnet_id);
    assert_eq!(subnet.vpc_id, vpc_id);
    assert!(subnet.cidr.ends_with("/26"), "{subnet:?}");
    assert_ne!(
        subnet.cidr, "10.20.0.0/26",
        "overlaps the taken /24: {subnet:?}"
    );
    assert_eq!(
        out(&o, "vpc_subnet[vpc1-default]", "subnet_cidr_block"),
        subnet.cidr
    );
    assert!(!out(&o, "vpc_subnet[vpc1-default]", "availability_zone").is_empty());
    assert_eq!(subnet.tags["dtk:service"], "net2");
    let group_id = out(&o, "security_group[vpc1-default]", "group_id");
    let group = view.group(group_id);
    assert_eq!(group.name, "e2e-web");
    assert_eq!(group.vpc_id, vpc_id);
    assert!(
        group.rules.contains(&"tcp 22-22 0.0.0.0/0".to_owned()),
        "{group:?}"
    );
    assert_eq!(o["images"]["images"][region]["ubuntu_jammy"]["ami"], ami);
    // The VPC made outside dtk is not tagged as dtk's.
    let (_, vpc_tags) = view.vpc(&vpc_id).unwrap();
    assert!(!vpc_tags.contains_key("dtk:service"), "{vpc_tags:?}");

    cli.ok(&["module", "install", &app_module()]);
    stage_app(&cli, "app2", "net2");
    // A converge killed once its first instance is launched, then run again: every node
    // has one instance, none two (client tokens and adoption by tags).
    let killed = cli.killed_when(&["service", "converge", "app2"], || {
        !view.instances(vec![service("app2")]).is_empty()
    });
    #[allow(clippy::print_stderr)]
    {
        let made = view.instances(vec![service("app2")]).len();
        eprintln!("existing VPC: converge killed: {killed}, with {made} instances launched");
    }
    cli.converge("app2");
    let instances = view.instances(vec![service("app2")]);
    assert_eq!(instances.len(), 3, "one instance per node: {instances:#?}");
    let names: BTreeSet<&str> = instances.iter().map(|i| i.tags["Name"].as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["app2-web", "app2-workers-1", "app2-workers-2"])
    );
    check_app_instances(&view, "app2", subnet_id, group_id);
    assert!(
        instances.iter().all(|i| i.image_id == ami),
        "{instances:#?}"
    );
    elapsed("existing VPC: app converged", start);

    cli.ok(&["service", "delete", "app2"]);
    cli.ok(&["service", "delete", "net2"]);
    let after = view.inventory();
    assert_eq!(after, before, "only what dtk made is gone");
    assert_eq!(view.vpc(&vpc_id).unwrap().1, vpc_tags);
    assert_eq!(view.subnet(&taken).cidr, "10.20.0.0/24");
    elapsed("existing VPC: deleted", start);

    cli.assert_no_leaks(&[ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY]);
}

/// An existing subnet and group (and their VPC): used as they are. The outputs are
/// filled all the same; the group's rules stay as they were, nothing is attached or
/// routed, and delete leaves all three.
#[test]
fn aws_existing_subnet_and_group_are_used_as_they_are() {
    let start = Instant::now();
    let moto = moto();
    let region = "eu-west-3";
    let view = Ec2View::new(&moto.url(), region);
    let cli = Cli::new(&moto.url(), region);
    let vpc_id = view.create_vpc("10.30.0.0/16", "theirs");
    let subnet_id = view.create_subnet(&vpc_id, "10.30.5.0/24", "theirs");
    let group_id = view.create_group(&vpc_id, "theirs", 443);
    let group_before = view.group(&group_id);
    let before = view.inventory();
    let ami = view.image_named(
        "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-*",
        "099720109477",
    );
    let (key_id, secret_key) = ("AKIADTKE2EUSEDKEY003", "e2e-used-secret-key-OKAPI-0003");

    stage_target(
        &cli,
        "target",
        "net3",
        region,
        &format!("{{'{region}': {{ubuntu_jammy: {{ami: {ami}}}}}}}"),
    );
    cli.set("net3", "credentials/aws_access_key_id", key_id);
    cli.set("net3", "credentials/aws_secret_access_key", secret_key);
    cli.set("net3", "vpc[vpc1]/vpc_id", &vpc_id);
    cli.set("net3", "vpc_subnet[vpc1-default]/subnet_id", &subnet_id);
    cli.set("net3", "security_group[vpc1-default]/group_id", &group_id);
    cli.converge("net3");

    let o = cli.outputs("net3");
    assert_eq!(out(&o, "vpc[vpc1]", "vpc_id"), vpc_id);
    assert_eq!(out(&o, "vpc[vpc1]", "cidr_block"), "10.30.0.0/16");
    assert_eq!(out(&o, "vpc_subnet[vpc1-default]", "subnet_id"), subnet_id);
    assert_eq!(
        out(&o, "vpc_subnet[vpc1-default]", "subnet_cidr_block"),
        "10.30.5.0/24"
    );
    assert_eq!(
        out(&o, "vpc_subnet[vpc1-default]", "availability_zone"),
        view.subnet(&subnet_id).availability_zone
    );
    assert_eq!(out(&o, "vpc_subnet[vpc1-default]", "vpc_id"), vpc_id);
    assert_eq!(
        out(&o, "security_group[vpc1-default]", "group_id"),
        group_id
    );
    assert_eq!(
        out(&o, "security_group[vpc1-default]", "group_name"),
        "theirs"
    );
    assert_eq!(view.inventory(), before, "nothing made, nothing attached");
    assert_eq!(view.group(&group_id).rules, group_before.rules);

    cli.ok(&["module", "install", &app_module()]);
    stage_app(&cli, "app3", "net3");
    cli.set("app3", "workers/cardinality", "1");
    cli.set("app3", "web/size", "t3.nano");
    cli.converge("app3");
    let instances = view.instances(vec![service("app3")]);
    assert_eq!(instances.len(), 2, "{instances:#?}");
    check_app_instances(&view, "app3", &subnet_id, &group_id);
    let web = instances
        .iter()
        .find(|i| i.tags["dtk:node"] == "web")
        .unwrap();
    assert_eq!(web.instance_type, "t3.nano");
    assert_eq!(web.image_id, ami);
    elapsed("existing subnet: app converged", start);

    cli.ok(&["service", "delete", "app3"]);
    cli.ok(&["service", "delete", "net3"]);
    assert_eq!(view.inventory(), before, "theirs, untouched");
    assert_eq!(view.group(&group_id).rules, group_before.rules);
    assert_eq!(view.group(&group_id).tags, group_before.tags);
    elapsed("existing subnet: deleted", start);

    cli.assert_stored(secret_key);
    cli.assert_no_leaks(&[key_id, secret_key, ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY]);
}

/// A converge that fails (nothing listens at the endpoint) says why without showing the
/// keys: not in its output (human or JSON), `task-status`, the home, nor the records.
#[test]
fn aws_failed_calls_do_not_show_the_keys() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cli = Cli::new(&endpoint, "sa-east-1");
    let (key_id, secret_key) = ("AKIADTKE2EFAILKEY004", "e2e-fail-secret-key-TAPIR-0004");
    stage_target(
        &cli,
        "target",
        "broken",
        "sa-east-1",
        "{'*': {ubuntu_jammy: {ami: ami-00000000}}}",
    );
    cli.set("broken", "credentials/aws_access_key_id", key_id);
    cli.set("broken", "credentials/aws_secret_access_key", secret_key);
    let human = cli.run(&["service", "converge", "broken"]).refused();
    let text = format!("{}{}", human.stdout, human.stderr);
    assert!(text.contains("vpc[vpc1]"), "names what failed: {text}");
    assert!(text.contains("could not connect"), "says why: {text}");
    assert!(
        !text.contains("DispatchFailure {"),
        "the cause once, without the SDK's debug dump: {text}"
    );
    let json = cli.run(&["--json", "service", "converge", "broken"]);
    assert_eq!(json.code, Some(1), "{json:?}");
    let status = cli.ok(&["service", "task-status", "broken"]);
    assert!(status.stdout.contains("failed"), "{}", status.stdout);
    cli.ok(&["--json", "service", "task-status", "broken"]);
    cli.ok(&["service", "status", "broken"]);
    cli.ok(&["service", "log", "broken"]);
    cli.assert_stored(secret_key);
    cli.assert_no_leaks(&[key_id, secret_key, ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY]);
}

/// A module that ships a script and a data file converges onto EC2 nodes. moto's
/// instances are not machines, so the node's `ssh_host` and `ssh_port` are set (the
/// documented override of `aws/ec2`'s `node`) to a private sshd on 127.0.0.6: the
/// node's actions run there, in its copy of the module's files, and an unchanged module
/// sends nothing the second time.
#[test]
fn aws_nodes_run_their_modules_files_over_ssh() {
    use dtk_tests::sshd::{Sshd, current_user};
    let moto = moto();
    let region = "ca-central-1";
    let view = Ec2View::new(&moto.url(), region);
    let cli = Cli::new(&moto.url(), region);
    let ami = view.image_named(
        "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-*",
        "099720109477",
    );
    let sshd = Sshd::start_on(&["127.0.0.6"]);
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known);
    stage_target(
        &cli,
        "target_iam",
        "aws3",
        region,
        &format!("{{'*': {{ubuntu_jammy: {{ami: {ami}, sizes: {{small: t3.small}}}}}}}}"),
    );
    cli.set(
        "aws3",
        "vpc[vpc1]/ssh_key_path",
        sshd.user_key().to_str().unwrap(),
    );
    cli.set(
        "aws3",
        "vpc[vpc1]/ssh_known_hosts_path",
        known.to_str().unwrap(),
    );
    cli.set("aws3", "vpc[vpc1]/ssh_host_key_policy", "strict");
    cli.converge("aws3");

    let nodes = tmp.path().join("nodes");
    let module = tmp.path().join("shipped");
    std::fs::create_dir_all(module.join("bin")).unwrap();
    std::fs::write(
        module.join("dtk.module.yaml"),
        format!(
            "dsl_version: 1.0.0
module: test/shipped
version: 1.0.0
component_defs:
  app:
    attributes:
      who: {{type: string, default: ec2}}
    actions:
      create:
        commands:
        - RUN ./bin/hello {{{{who}}}} > hello.txt
        - RUN cmp data.txt \"$DTK_MODULE_DIR/data.txt\" && cp data.txt copy.txt
assemblies:
  app:
    components:
    - node[web]:
        attributes:
          image: ubuntu_jammy
          size: small
          ssh_host: 127.0.0.6
          ssh_port: {port}
          ssh_user: {user}
          ssh_workdir: {workdir}
        components: [app]
",
            port = sshd.port(),
            user = current_user(),
            workdir = nodes.join("web").display(),
        ),
    )
    .unwrap();
    let hello = module.join("bin/hello");
    std::fs::write(&hello, "#!/bin/sh\necho \"hello $1 from the module\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(module.join("data.txt"), "shipped data\n").unwrap();
    cli.ok(&["module", "install", module.to_str().unwrap()]);
    cli.ok(&[
        "service",
        "stage",
        "test/shipped",
        "app",
        "-n",
        "ship",
        "--target",
        "aws3",
    ]);
    let ran = cli.converge_json("ship");
    assert!(ran.contains("web/app.create"), "{ran:?}");
    let o = cli.outputs("ship");
    assert_eq!(out(&o, "node[web]", "ssh_host"), "127.0.0.6");
    assert!(!out(&o, "node[web]", "instance_id").is_empty());
    let files = nodes.join("web/modules/test/shipped");
    let read = |f: &str| std::fs::read_to_string(files.join(f)).unwrap_or_default();
    assert_eq!(read("hello.txt"), "hello ec2 from the module\n");
    assert_eq!(read("copy.txt"), "shipped data\n");
    let logins = sshd.accepted_logins();

    // Nothing changed: nothing runs, nothing is sent.
    assert!(cli.converge_json("ship").is_empty());
    assert_eq!(sshd.accepted_logins(), logins, "no new connection");

    // An edited script re-runs the component with the new script.
    let copy = cli
        .dtk
        .service_dir("ship")
        .join("modules/test/shipped/bin/hello");
    std::fs::write(&copy, "#!/bin/sh\necho \"bonjour $1\"\n").unwrap();
    let ran = cli.converge_json("ship");
    assert!(ran.contains("web/app.create"), "{ran:?}");
    assert_eq!(read("hello.txt"), "bonjour ec2\n");
    // That command ran over the connection an earlier one kept (ControlPersist): no new
    // login. Its shell on the node ended with it and removed the run's files.
    assert_eq!(
        sshd.accepted_logins(),
        logins,
        "the kept connection was reused"
    );
    let run_files = || dtk_tests::sshd::run_files(&nodes.join("web"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !run_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left on the node: {:?}",
            run_files()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The target is not deleted from under a service that has resources, nor uninstalled
    // while a service is staged on it; once the service is deleted, the target may go.
    let refused = cli.run(&["service", "delete", "aws3"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("ship"), "{refused:?}");
    cli.ok(&["service", "delete", "ship"]);
    assert_eq!(cli.run(&["service", "uninstall", "aws3"]).code, Some(1));
    cli.ok(&["service", "delete", "aws3"]);
    cli.ok(&["service", "uninstall", "ship"]);
    cli.ok(&["service", "uninstall", "aws3"]);
}
