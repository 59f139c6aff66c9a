//! Instances of nodes and node groups: idempotent launch, scaling, drift, delete.

use std::collections::BTreeMap;

use dtk_target_aws::{
    ApiErrorKind, AwsError, AwsSettings, Deletion, Ec2, Gateway, InstanceSpec, InstanceState,
    InstanceTarget, NetworkSpec, StaticCredentials, Timeouts,
};

use crate::images::ubuntu_filter;
use crate::moto::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY};
use crate::{Raw, World, chain, filter};

/// A network and an image in the world's region; the spec of node `node` of `service`.
async fn node_spec(w: &World, service: &str, node: &str) -> InstanceSpec {
    let mut net = NetworkSpec::new(format!("{service}-target"));
    net.subnet.gateway = Gateway::Internet;
    let out = w.ec2.ensure_network(&net).await.unwrap();
    let image = w.ec2.find_image(&ubuntu_filter()).await.unwrap();
    InstanceSpec {
        service: service.to_owned(),
        node: node.to_owned(),
        image_id: image.image_id,
        instance_type: "t3.micro".to_owned(),
        subnet_id: out.subnet.subnet_id,
        security_group_ids: vec![out.security_group.group_id],
        key_name: None,
        tags: BTreeMap::from([("team".to_owned(), "qa".to_owned())]),
    }
}

fn node_filters(service: &str, node: &str) -> Vec<aws_sdk_ec2::types::Filter> {
    vec![Raw::service_filter(service), filter("tag:dtk:node", node)]
}

#[tokio::test]
async fn a_node_launched_twice_with_one_key_is_one_instance() {
    let w = World::new("ap-southeast-1").await;
    let spec = node_spec(&w, "app1", "web").await;

    let first = w.ec2.ensure_node(&spec, "task-0001").await.unwrap();
    assert!(first.instance_id.starts_with("i-"));
    assert_eq!(first.state, InstanceState::Running);
    assert_eq!(first.node, "web");
    assert_eq!(first.index, 1);
    assert!(first.private_ip_address.is_some(), "{first:?}");
    assert_eq!(first.instance_type, "t3.micro");
    assert_eq!(first.image_id, spec.image_id);

    // The same task again (a retry or a resumed converge), then a later task.
    let again = w.ec2.ensure_node(&spec, "task-0001").await.unwrap();
    assert_eq!(again.instance_id, first.instance_id);
    let later = w.ec2.ensure_node(&spec, "task-0002").await.unwrap();
    assert_eq!(later.instance_id, first.instance_id);
    assert_eq!(
        w.raw.live_instance_ids(node_filters("app1", "web")).await,
        vec![first.instance_id.clone()]
    );

    // Its tags, as EC2 shows them.
    let out = w
        .raw
        .0
        .describe_instances()
        .instance_ids(&first.instance_id)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = out.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tags.get("Name").map(String::as_str), Some("app1-web"));
    assert_eq!(tags.get("dtk:service").map(String::as_str), Some("app1"));
    assert_eq!(tags.get("dtk:node").map(String::as_str), Some("web"));
    assert_eq!(tags.get("dtk:managed").map(String::as_str), Some("true"));
    assert_eq!(tags.get("team").map(String::as_str), Some("qa"));

    assert_eq!(
        w.ec2.delete_node("app1", "web").await.unwrap(),
        vec![first.instance_id.clone()]
    );
    assert!(
        w.raw
            .live_instance_ids(node_filters("app1", "web"))
            .await
            .is_empty()
    );
    assert_eq!(w.ec2.read_instance(&first.instance_id).await.unwrap(), None);
}

#[tokio::test]
async fn a_node_group_scales_up_and_down() {
    let w = World::new("ap-southeast-2").await;
    let spec = node_spec(&w, "app2", "workers").await;

    let r = w.ec2.ensure_node_group(&spec, 3, "task-1").await.unwrap();
    assert_eq!(
        r.members.iter().map(|m| m.index).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(r.launched.len(), 3);
    assert!(r.terminated.is_empty());
    assert!(r.members.iter().all(|m| m.state == InstanceState::Running));
    let three: Vec<String> = r.members.iter().map(|m| m.instance_id.clone()).collect();

    let r = w.ec2.ensure_node_group(&spec, 3, "task-1").await.unwrap();
    assert!(r.launched.is_empty() && r.terminated.is_empty());
    assert_eq!(
        r.members
            .iter()
            .map(|m| m.instance_id.clone())
            .collect::<Vec<_>>(),
        three
    );

    let r = w.ec2.ensure_node_group(&spec, 5, "task-2").await.unwrap();
    assert_eq!(
        r.members.iter().map(|m| m.index).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(r.launched.len(), 2);
    assert_eq!(
        r.members[..3]
            .iter()
            .map(|m| m.instance_id.clone())
            .collect::<Vec<_>>(),
        three
    );
    assert_eq!(
        w.raw
            .live_instance_ids(node_filters("app2", "workers"))
            .await
            .len(),
        5
    );
    let five: Vec<String> = r.members.iter().map(|m| m.instance_id.clone()).collect();

    let r = w.ec2.ensure_node_group(&spec, 2, "task-3").await.unwrap();
    assert_eq!(
        r.terminated,
        vec![five[4].clone(), five[3].clone(), five[2].clone()],
        "highest index first"
    );
    assert_eq!(
        r.members
            .iter()
            .map(|m| m.instance_id.clone())
            .collect::<Vec<_>>(),
        five[..2].to_vec()
    );
    let mut live = w
        .raw
        .live_instance_ids(node_filters("app2", "workers"))
        .await;
    live.sort();
    let mut want = five[..2].to_vec();
    want.sort();
    assert_eq!(live, want);

    let r = w.ec2.ensure_node_group(&spec, 0, "task-4").await.unwrap();
    assert!(r.members.is_empty());
    assert_eq!(r.terminated.len(), 2);
    assert!(
        w.raw
            .live_instance_ids(node_filters("app2", "workers"))
            .await
            .is_empty()
    );
}

/// What a converge asks of EC2 for each member of a group: a lookup of that member by
/// its tags (answered with it alone, not the whole group), `RunInstances`, one describe
/// until it runs; and nothing more to bring a member that is as its node asks in line.
#[tokio::test]
async fn a_new_member_costs_three_requests_and_a_current_one_none() {
    let w = World::new("us-west-2").await;
    let spec = node_spec(&w, "app6", "workers").await;
    let first = w.ec2.ensure_member(&spec, 1, "task-1").await.unwrap();

    let before = w.ec2.requests_sent();
    let second = w.ec2.ensure_member(&spec, 2, "task-1").await.unwrap();
    assert_eq!(
        w.ec2.requests_sent() - before,
        3,
        "DescribeInstances by tags, RunInstances, DescribeInstances by id"
    );
    assert_eq!((second.index, &second.state), (2, &InstanceState::Running));
    let ids = |found: Vec<dtk_target_aws::InstanceInfo>| -> Vec<String> {
        found.into_iter().map(|i| i.instance_id).collect()
    };
    assert_eq!(
        ids(w.ec2.member_instances("app6", "workers", 2).await.unwrap()),
        vec![second.instance_id.clone()],
        "the member alone, not its group"
    );
    assert_eq!(
        ids(w.ec2.node_instances("app6", "workers").await.unwrap()),
        vec![first.instance_id.clone(), second.instance_id.clone()]
    );
    // The same member again: found, not launched.
    let before = w.ec2.requests_sent();
    let again = w.ec2.ensure_member(&spec, 2, "task-2").await.unwrap();
    assert_eq!(again.instance_id, second.instance_id);
    assert_eq!(w.ec2.requests_sent() - before, 2, "a lookup and a describe");

    // As its node asks and running: no request.
    let mut target = InstanceTarget {
        instance_type: spec.instance_type.clone(),
        security_group_ids: spec.security_group_ids.clone(),
        tags: spec.tags.clone(),
    };
    let before = w.ec2.requests_sent();
    let same = w
        .ec2
        .reconcile_described(second.clone(), &target)
        .await
        .unwrap();
    assert_eq!(same, second);
    assert_eq!(w.ec2.requests_sent(), before);

    // A tag the node now asks for: written, and the instance read back as it is now.
    target.tags.insert("tier".to_owned(), "b".to_owned());
    let before = w.ec2.requests_sent();
    let tagged = w
        .ec2
        .reconcile_described(second.clone(), &target)
        .await
        .unwrap();
    assert_eq!(tagged.tags.get("tier").map(String::as_str), Some("b"));
    assert_eq!(tagged.tags.get("team").map(String::as_str), Some("qa"));
    assert_eq!(tagged.state, InstanceState::Running);
    assert_eq!(
        w.ec2.requests_sent() - before,
        2,
        "CreateTags, DescribeInstances"
    );

    // Stopped outside dtk: started, and waited for.
    w.raw
        .0
        .stop_instances()
        .instance_ids(&second.instance_id)
        .send()
        .await
        .unwrap();
    let stopped = w
        .ec2
        .read_instance(&second.instance_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stopped.state, InstanceState::Running);
    let started = w.ec2.reconcile_described(stopped, &target).await.unwrap();
    assert_eq!(started.state, InstanceState::Running);
}

#[tokio::test]
async fn an_instance_terminated_outside_dtk_is_missing_and_made_again() {
    let w = World::new("ap-south-1").await;
    let spec = node_spec(&w, "app3", "db").await;
    let first = w.ec2.ensure_node(&spec, "task-a").await.unwrap();
    assert_eq!(
        w.ec2
            .read_instance(&first.instance_id)
            .await
            .unwrap()
            .map(|i| i.state),
        Some(InstanceState::Running)
    );

    // Someone terminates it in the console.
    w.raw
        .0
        .terminate_instances()
        .instance_ids(&first.instance_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        w.ec2.read_instance(&first.instance_id).await.unwrap(),
        None,
        "drift: gone"
    );
    assert!(w.ec2.node_instances("app3", "db").await.unwrap().is_empty());
    assert_eq!(
        w.ec2.read_instance("i-00000000000000000").await.unwrap(),
        None
    );

    // The next converge makes it again, even within the same task.
    let second = w.ec2.ensure_node(&spec, "task-a").await.unwrap();
    assert_ne!(second.instance_id, first.instance_id);
    assert_eq!(second.state, InstanceState::Running);
    assert_eq!(
        w.raw.live_instance_ids(node_filters("app3", "db")).await,
        vec![second.instance_id.clone()]
    );

    // A group member terminated outside dtk is replaced at its index.
    let g = w
        .ec2
        .ensure_node_group(
            &InstanceSpec {
                node: "pool".to_owned(),
                ..spec.clone()
            },
            2,
            "t",
        )
        .await
        .unwrap();
    w.raw
        .0
        .terminate_instances()
        .instance_ids(&g.members[0].instance_id)
        .send()
        .await
        .unwrap();
    let g2 = w
        .ec2
        .ensure_node_group(
            &InstanceSpec {
                node: "pool".to_owned(),
                ..spec.clone()
            },
            2,
            "t2",
        )
        .await
        .unwrap();
    assert_eq!(g2.launched.len(), 1);
    assert_eq!(g2.members[1].instance_id, g.members[1].instance_id);
    assert_eq!(g2.members[0].index, 1);
    assert_ne!(g2.members[0].instance_id, g.members[0].instance_id);
}

#[tokio::test]
async fn instances_dtk_did_not_make_are_left_alone() {
    let w = World::new("ca-central-1").await;
    let spec = node_spec(&w, "app4", "web").await;
    let out = w
        .raw
        .0
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&spec.subnet_id)
        .send()
        .await
        .unwrap();
    let theirs = out.instances()[0].instance_id().unwrap().to_owned();
    assert_eq!(
        w.ec2.terminate_instance("app4", &theirs).await.unwrap(),
        Deletion::LeftAlone
    );
    assert!(
        w.ec2
            .node_instances("app4", "web")
            .await
            .unwrap()
            .is_empty()
    );
    let mine = w.ec2.ensure_node(&spec, "k").await.unwrap();
    assert_eq!(
        w.ec2
            .terminate_instance("app4", &mine.instance_id)
            .await
            .unwrap(),
        Deletion::Deleted
    );
    assert_eq!(
        w.ec2
            .terminate_instance("app4", &mine.instance_id)
            .await
            .unwrap(),
        Deletion::AlreadyGone
    );
    assert_eq!(
        w.raw
            .live_instance_ids(vec![filter("instance-id", &theirs)])
            .await,
        vec![theirs]
    );
}

/// Errors name the operation and the resource, and never hold a credential.
#[tokio::test]
async fn errors_name_what_failed_and_hide_credentials() {
    let w = World::new("sa-east-1").await;
    let mut spec = node_spec(&w, "app5", "web").await;
    spec.subnet_id = "subnet-00000000000000bad".to_owned();
    let err = w.ec2.ensure_node(&spec, "k").await.unwrap_err();
    let text = format!("{} | {:?}", chain(&err), err);
    assert!(text.contains("RunInstances"), "{text}");
    assert!(text.contains("instance app5-web"), "{text}");
    assert!(text.contains("InvalidSubnetID.NotFound"), "{text}");
    for secret in [FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY] {
        assert!(!text.contains(secret), "{secret} shows in {text}");
    }

    // Nothing listens: a connection error, still without the keys.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = AwsSettings {
        max_attempts: 1,
        timeouts: Timeouts {
            connect: std::time::Duration::from_secs(2),
            attempt: std::time::Duration::from_secs(5),
            operation: std::time::Duration::from_secs(5),
        },
        ..AwsSettings::new("sa-east-1")
            .with_endpoint_url(format!("http://127.0.0.1:{port}"))
            .with_credentials(StaticCredentials::new(
                FAKE_ACCESS_KEY_ID,
                FAKE_SECRET_ACCESS_KEY,
            ))
    };
    let offline = Ec2::connect(&settings).await.unwrap();
    let err = offline.node_instances("app5", "web").await.unwrap_err();
    let AwsError::Api {
        operation, source, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*operation, "DescribeInstances");
    assert_eq!(source.kind(), ApiErrorKind::Connection, "{err:?}");
    let text = format!("{} | {:?}", chain(&err), err);
    for secret in [FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY] {
        assert!(!text.contains(secret), "{secret} shows in {text}");
    }
}
