package core

import (
	"errors"
	"fmt"
	"time"
)

// errBeforeRestore: a keygen proposal was made before this console's
// store was restored from a backup (Config.RestoredAt); openProposal
// wraps it in ErrRejected.
var errBeforeRestore = errors.New("made before this console was restored from a backup (it may have answered it from the state it lost): propose again")

// restoredText is the reason recorded in a ceremony abandoned at a restore.
const restoredText = "this console's store was restored from a backup made while the ceremony ran: it no longer takes part"

// AbandonBeforeRestore retires, in tx, every ceremony that was not finished
// when the backup this store was restored from was made (at backup): each
// is finished with an InputRestored input. The console must not take part
// in them again: it would answer from a state the others have seen move
// on (inputs it accepted after the backup are lost), and a keygen's seed
// would be used a second time. The App then neither rebuilds nor answers
// them. It returns how many it retired.
func AbandonBeforeRestore(tx VaultTx, backup time.Time) (int, error) {
	type open struct {
		r    *CeremonyRecord
		next uint64
	}
	var opened []open
	err := tx.Scan(bucketCeremonies, nil, func(_, v []byte) error {
		r, next, err := decodeCeremony(v)
		if err != nil {
			return err
		}
		if !r.Finished {
			opened = append(opened, open{r, next})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("core: abandon ceremonies: %w", err)
	}
	for _, o := range opened {
		in := Input{Kind: InputRestored, Text: restoredText, Time: backup}
		if err := tx.Put(bucketInputs, inputKey(o.r.ID, o.next), encodeInput(in)); err != nil {
			return 0, err
		}
		o.r.Finished = true
		if err := tx.Put(bucketCeremonies, o.r.ID[:], encodeCeremony(o.r, o.next+1)); err != nil {
			return 0, err
		}
	}
	return len(opened), nil
}

// abandoned reports whether r was retired at a restore.
func abandoned(r *CeremonyRecord) bool {
	return len(r.Inputs) > 0 && r.Inputs[len(r.Inputs)-1].Kind == InputRestored
}

// checkRestored refuses a proposal made (created, by the proposer's
// clock; zero when it does not say) before the restore.
func (a *App) checkRestored(created time.Time) error {
	if a.cfg.RestoredAt.IsZero() || created.After(a.cfg.RestoredAt) {
		return nil
	}
	return errBeforeRestore
}
