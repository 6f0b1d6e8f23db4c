// Package kubernetes holds ptyreclaim's manifests for Kubernetes nodes: the
// DaemonSet with its policy ConfigMap, the node-problem-detector custom
// plugin config and the Prometheus alert rules. It has no code; its tests
// decode the manifests strictly into the real Kubernetes API types.
package kubernetes
