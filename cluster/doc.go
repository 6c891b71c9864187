// Package cluster makes several imb nodes one broker. It moves between nodes, through
// NATS with JetStream, only what each node's identity hook already allowed: published
// messages, retained messages, the ownership of client identifiers, and identity
// events. It decides nothing: a message that arrives from another node is handed to
// the local mochi server as an inline publish, so every delivery is judged by the
// receiving client's grants on the receiving node, exactly like a local publish.
//
// The layout on the engine:
//
//   - core NATS subject imb.m0: QoS 0 messages (at most once, as QoS 0 promises);
//   - stream IMB_MSGS (subjects imb.m1.<node>): QoS 1 and 2 messages, read by one
//     durable consumer per node that acknowledges a message once the local server
//     has handed it to its subscribers;
//   - stream IMB_RETAINED (subjects imb.r.<topic hash>, one message per subject): the
//     retained store, which a node that joins loads before it accepts connections;
//   - key-value bucket imb_sessions: which node holds which client identifier for
//     which owner, so that a client id is one session cluster-wide;
//   - core NATS subjects imb.node.<node>.takeover and imb.events: requests to one
//     node and identity events for all.
//
// The package knows neither tokens nor topics.yaml: the owner of a client id is an
// opaque string from the identity hook, and whether a local connection yields to
// another node's claim is the identity hook's decision (HookConfig.Yield).
package cluster
