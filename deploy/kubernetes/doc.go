// Package kubernetes holds the Kubernetes manifests of the bucketfs CSI
// driver (the *.yaml files beside this one, and README.md, the guide that
// applies them). It has no code: its test decodes every manifest strictly
// with the k8s.io/api types, so a misspelt field fails `make test`, and
// checks that the pieces agree with each other (driver name, socket paths,
// volumes and mounts, secrets, images).
package kubernetes
