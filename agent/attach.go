package agent

import (
	"errors"
	"fmt"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
)

// attach attaches the programs to every interface of cfg; on an error it
// detaches what it attached.
func (a *Agent) attach(cfg *config.Config) error {
	var done []string
	for _, ifc := range cfg.Interfaces {
		if err := a.attachOne(cfg, ifc); err != nil {
			for _, name := range done {
				_ = a.dp.Detach(name)
			}
			return err
		}
		done = append(done, ifc.Name)
	}
	return nil
}

func (a *Agent) attachOne(cfg *config.Config, ifc config.Interface) error {
	role, err := datapath.ParseRole(string(ifc.Role))
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifc.Name, err)
	}
	mode, err := datapath.ParseMode(string(cfg.XDPMode))
	if err != nil {
		return err
	}
	at, err := a.dp.Attach(ifc.Name, role, mode)
	if err != nil {
		return err
	}
	if at.Adopted {
		a.log.Info("steering on interface: kept the previous agent's attachment", "interface", at.Interface, "role", at.Role, "hook", at.Hook, "mode", mode)
		return nil
	}
	a.log.Info("steering on interface", "interface", at.Interface, "role", at.Role, "hook", at.Hook, "mode", mode)
	return nil
}

// reattach brings the attachments from a.cfg to cfg: interfaces that went
// away are detached, new ones attached, changed ones attached anew.
func (a *Agent) reattach(cfg *config.Config) error {
	old := make(map[string]config.Interface, len(a.cfg.Interfaces))
	for _, ifc := range a.cfg.Interfaces {
		old[ifc.Name] = ifc
	}
	var errs []error
	for _, ifc := range cfg.Interfaces {
		prev, had := old[ifc.Name]
		delete(old, ifc.Name)
		if had && prev == ifc && a.cfg.XDPMode == cfg.XDPMode {
			continue
		}
		if had {
			if err := a.dp.Detach(ifc.Name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := a.attachOne(cfg, ifc); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range old {
		if err := a.dp.Detach(name); err != nil {
			errs = append(errs, err)
		}
		a.log.Info("stopped steering on interface", "interface", name)
	}
	return errors.Join(errs...)
}
