package proxy

import (
	"fmt"
	"strings"
)

// Separator joins an upstream name and a tool name into a namespaced tool
// name: "<upstream>.<tool>". Upstream names never contain it, so the first
// Separator in a namespaced name always ends the upstream part; the tool
// part is the upstream's own tool name, verbatim, and may contain further
// dots.
const Separator = "."

// Join returns the namespaced name "<upstream>.<tool>". It does not
// validate its arguments; Split(Join(u, t)) returns u, t whenever u is a
// valid upstream name and t is not empty.
func Join(upstream, tool string) string {
	return upstream + Separator + tool
}

// Split returns the upstream and tool parts of a namespaced tool name. It
// fails with ErrInvalid when name has no Separator, when the part before
// the first Separator is not a valid upstream name, or when the tool part
// is empty.
func Split(name string) (upstream, tool string, err error) {
	upstream, tool, ok := strings.Cut(name, Separator)
	if !ok {
		return "", "", fmt.Errorf("%w: tool name %q is not namespaced as <upstream>.<tool>", ErrInvalid, name)
	}
	if err := ValidateName(upstream); err != nil {
		return "", "", fmt.Errorf("%w: tool name %q: bad upstream part", ErrInvalid, name)
	}
	if tool == "" {
		return "", "", fmt.Errorf("%w: tool name %q has an empty tool part", ErrInvalid, name)
	}
	return upstream, tool, nil
}
