// Package cluster will hold the raft-replicated desired state (services,
// pools, weights, pins, mirror policies, rollouts) shared by the agents of a
// fleet. Until then every agent is a single node reading its manifests.
package cluster
