//go:build !linux

package api

import (
	"errors"
	"testing"
)

func runAs(t *testing.T, uid, gid uint32, path string) (string, error) {
	t.Skip("switching users is done on Linux only")
	return "", errors.ErrUnsupported
}
