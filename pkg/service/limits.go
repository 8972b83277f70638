package service

// Limits of the whole desired state that every node's kernel imposes: the
// sizes its maps are created with. The cluster refuses a state beyond them
// before it commits (package cluster's checkCapacity), so that every
// node's kernel can hold every state the cluster holds. pkg/datapath
// sizes its maps from these numbers and checks, at compile time and in
// TestNodeLimits, that they are the kernel's.
const (
	// NodeMaxServices is how many services every node's kernel holds: the
	// size of its services map, and the number of service slots of every
	// table kept by service (tables, counters, settings, rates, mirrors).
	NodeMaxServices = 1024
	// NodePinTable is the size of every node's pin table, shared by the
	// pins of all services.
	NodePinTable = 65536
	// NodeMaxPins is how many pins the state may hold over all services:
	// the pin table less room for one service's whole pin set, since a
	// service's new pins go into the table before the pins it drops
	// leave.
	NodeMaxPins = NodePinTable - MaxPins
)
