package datapath

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// WatchRoutes invalidates the programs' next-hop cache on every route,
// neighbour and link change in the caller's network namespace, until ctx
// ends. Bursts of changes cost one invalidation.
func (d *Datapath) WatchRoutes(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	links := make(chan netlink.LinkUpdate, 64)
	failed := make(chan error, 3)
	onErr := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("watch routes: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("watch neighbours: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			// A lost netlink message means a lost change: invalidate, and
			// let the caller restart the watch.
			_ = d.RoutesChanged()
			return fmt.Errorf("watch routes: %w", err)
		case <-routes:
		case <-neighs:
		case <-links:
		}
		drain(routes)
		drain(neighs)
		drain(links)
		if err := d.RoutesChanged(); err != nil {
			return fmt.Errorf("invalidate next hops: %w", err)
		}
	}
}

func drain[T any](c <-chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
