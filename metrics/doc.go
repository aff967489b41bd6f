// Package metrics declares every kelpie_* metric in one place and registers
// them on a registry the embedding application passes in (there is no global
// registry in library code).
//
// Gauges that mirror node state (leadership, Raft indexes, dropped gossip
// events) are read from a Source at scrape time; counters and histograms are
// updated by the node as things happen. All methods are safe for concurrent
// use.
package metrics
