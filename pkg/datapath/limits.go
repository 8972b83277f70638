package datapath

import "github.com/graylane/graylane/pkg/service"

// The cluster admits no state beyond service's node limits; a data path
// with the default options must hold every such state (TestNodeLimits
// checks the maps' sizes).
var (
	_ [service.NodeMaxServices]struct{} = [DefaultMaxServices]struct{}{}
	_ [service.NodePinTable]struct{}    = [DefaultMaxPins]struct{}{}
)
