package boltfile

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
)

// The on-disk layout of bbolt v1.5 (go.etcd.io/bbolt/internal/common),
// in the byte order of the machine that wrote it: a 16-byte page header
// (id u64, flags u16, count u16, overflow u32), and in the two meta pages
// (pages 0 and 1, each at its page's start) the meta after that header:
// magic u32, version u32, page size u32, flags u32, root bucket (root page
// u64, sequence u64), freelist page u64, high water mark u64 (the first
// page id past the used pages), txid u64, and the FNV-64a checksum of the
// 56 bytes before it.
const (
	pageHeaderSize = 16
	metaSize       = 64
	metaSummed     = 56 // bytes the checksum covers

	flagMeta     = 0x04
	flagFreelist = 0x10

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	noFreelist = ^uint64(0)

	// Page sizes bbolt takes from the OS or from Options.PageSize; a meta
	// outside this range is damage, and bounds what is read.
	minPageSize = 512
	maxPageSize = 1 << 20
)

var order = binary.NativeEndian

// meta is a decoded meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// CheckHeader checks, without mapping it, what bbolt trusts when it opens
// a file of size bytes read through r: both meta pages (marker, version,
// checksum, page size, the page ids they name), that the file is whole
// pages and holds every page below the high water mark, and the freelist
// page when the file keeps one. Errors wrap ErrDamaged. A file bbolt wrote
// and fsynced passes; what fails would make bbolt panic, fault on a page
// past the end of the file, or silently fall back to an older commit.
func CheckHeader(r io.ReaderAt, size int64) error {
	if size == 0 {
		return fmt.Errorf("%w: the file is empty", ErrDamaged)
	}
	m0, err := readMeta(r, size, 0, 0)
	if err != nil {
		return err
	}
	m1, err := readMeta(r, size, int64(m0.pageSize), 1)
	if err != nil {
		return err
	}
	ps := int64(m0.pageSize)
	if m1.pageSize != m0.pageSize {
		return fmt.Errorf("%w: the meta pages disagree on the page size (%d, %d)", ErrDamaged, m0.pageSize, m1.pageSize)
	}
	if size%ps != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %d-byte pages", ErrDamaged, size, ps)
	}
	pages := uint64(size / ps)
	for i, m := range []meta{m0, m1} {
		switch {
		case m.pgid > pages:
			return fmt.Errorf("%w: meta page %d uses %d pages, the file holds %d (truncated?)", ErrDamaged, i, m.pgid, pages)
		case m.root < 2 || m.root >= m.pgid:
			return fmt.Errorf("%w: meta page %d: root page %d outside [2, %d)", ErrDamaged, i, m.root, m.pgid)
		case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
			return fmt.Errorf("%w: meta page %d: freelist page %d outside [2, %d)", ErrDamaged, i, m.freelist, m.pgid)
		}
	}
	newest := m0
	if m1.txid > m0.txid {
		newest = m1
	}
	if newest.freelist != noFreelist {
		return checkFreelist(r, ps, newest)
	}
	return nil
}

// readMeta reads and validates the meta page number id at off.
func readMeta(r io.ReaderAt, size, off int64, id uint64) (meta, error) {
	var b [pageHeaderSize + metaSize]byte
	if off+int64(len(b)) > size {
		return meta{}, fmt.Errorf("%w: the file (%d bytes) ends before meta page %d", ErrDamaged, size, id)
	}
	if _, err := r.ReadAt(b[:], off); err != nil {
		return meta{}, fmt.Errorf("%w: read meta page %d: %w", ErrDamaged, id, err)
	}
	p, body := b[:pageHeaderSize], b[pageHeaderSize:]
	m := meta{
		pageSize: order.Uint32(body[8:]),
		root:     order.Uint64(body[16:]),
		freelist: order.Uint64(body[32:]),
		pgid:     order.Uint64(body[40:]),
		txid:     order.Uint64(body[48:]),
	}
	h := fnv.New64a()
	h.Write(body[:metaSummed])
	switch {
	case order.Uint32(body[0:]) != boltMagic:
		return meta{}, fmt.Errorf("%w: meta page %d: not a bbolt meta page", ErrDamaged, id)
	case order.Uint32(body[4:]) != boltVersion:
		return meta{}, fmt.Errorf("%w: meta page %d: format version %d", ErrDamaged, id, order.Uint32(body[4:]))
	case order.Uint64(body[metaSummed:]) != h.Sum64():
		return meta{}, fmt.Errorf("%w: meta page %d: checksum mismatch", ErrDamaged, id)
	case order.Uint64(p[0:]) != id || order.Uint16(p[8:]) != flagMeta:
		return meta{}, fmt.Errorf("%w: meta page %d: page header does not match", ErrDamaged, id)
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || bits.OnesCount32(m.pageSize) != 1:
		return meta{}, fmt.Errorf("%w: meta page %d: page size %d", ErrDamaged, id, m.pageSize)
	case id == 0 && size < 2*int64(m.pageSize):
		return meta{}, fmt.Errorf("%w: the file (%d bytes) is shorter than its two meta pages", ErrDamaged, size)
	}
	return m, nil
}

// checkFreelist checks the freelist page of m: bbolt reads its count and
// ids straight from the map.
func checkFreelist(r io.ReaderAt, ps int64, m meta) error {
	var h [pageHeaderSize + 8]byte
	if _, err := r.ReadAt(h[:], int64(m.freelist)*ps); err != nil {
		return fmt.Errorf("%w: read the freelist page: %w", ErrDamaged, err)
	}
	id, flags := order.Uint64(h[0:]), order.Uint16(h[8:])
	count, overflow := uint64(order.Uint16(h[10:])), uint64(order.Uint32(h[12:]))
	skip := uint64(0)
	if count == 0xFFFF { // the real count is the first element
		count, skip = order.Uint64(h[pageHeaderSize:]), 1
	}
	span := uint64(ps) * (overflow + 1)
	switch {
	case id != m.freelist || flags != flagFreelist:
		return fmt.Errorf("%w: page %d is not the freelist page its meta names", ErrDamaged, m.freelist)
	case overflow >= m.pgid-m.freelist:
		return fmt.Errorf("%w: the freelist runs past the used pages", ErrDamaged)
	case count > (span-pageHeaderSize)/8-skip:
		return fmt.Errorf("%w: the freelist counts %d ids, more than its pages hold", ErrDamaged, count)
	}
	ids := make([]byte, count*8)
	if _, err := r.ReadAt(ids, int64(m.freelist)*ps+pageHeaderSize+int64(skip*8)); err != nil {
		return fmt.Errorf("%w: read the freelist: %w", ErrDamaged, err)
	}
	for i := 0; i < len(ids); i += 8 {
		if p := order.Uint64(ids[i:]); p < 2 || p >= m.pgid {
			return fmt.Errorf("%w: the freelist names page %d, outside [2, %d)", ErrDamaged, p, m.pgid)
		}
	}
	return nil
}
