package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// What the manifests must say. A sidecar bump changes the tag here and in
// the manifest together.
const (
	driverName    = "csi.bucketfs.dev"
	namespace     = "bucketfs"
	bucketfsImage = "ghcr.io/bucketfs/bucketfs:latest"

	registrarImage   = "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.18.0"
	livenessImage    = "registry.k8s.io/sig-storage/livenessprobe:v2.20.0"
	provisionerImage = "registry.k8s.io/sig-storage/csi-provisioner:v6.3.0"

	kubeletDir = "/var/lib/kubelet"
	stateDir   = "/var/lib/bucketfs-csi"
	cacheDir   = "/var/cache/bucketfs"
)

// kindsByFile is every manifest there is and the kinds it may hold: a new
// file, or an object of an unexpected kind, fails until it is added here.
var kindsByFile = map[string][]string{
	"namespace.yaml":            {"Namespace"},
	"csidriver.yaml":            {"CSIDriver"},
	"rbac-controller.yaml":      {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
	"rbac-node.yaml":            {"ServiceAccount"},
	"controller.yaml":           {"Deployment"},
	"node.yaml":                 {"DaemonSet"},
	"example-secret.yaml":       {"Secret"},
	"example-storageclass.yaml": {"StorageClass"},
	"example-static-pv.yaml":    {"PersistentVolume", "PersistentVolumeClaim"},
	"example-dynamic-pvc.yaml":  {"PersistentVolumeClaim"},
	"example-pod.yaml":          {"Pod"},
}

// The driver's names for StorageClass parameters, volume attributes and
// secret keys (see csi/).
var (
	scParams = []string{"bucket", "endpoint", "region", "pathStyle", "prefix", "newBucket", "mountOptions",
		"csi.storage.k8s.io/provisioner-secret-name", "csi.storage.k8s.io/provisioner-secret-namespace",
		"csi.storage.k8s.io/node-publish-secret-name", "csi.storage.k8s.io/node-publish-secret-namespace"}
	pvAttributes = []string{"bucket", "prefix", "endpoint", "region", "pathStyle", "mountOptions"}
	// The secret may also give endpoint, region and pathStyle.
	secretKeys = []string{"accessKeyID", "secretAccessKey", "sessionToken", "endpoint", "region", "pathStyle"}
)

// decoder decodes the API groups the manifests use, strictly: an unknown or
// duplicated field is an error, and so is a kind or apiVersion the groups
// do not have.
var decoder runtime.Decoder

func init() {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(rbacv1.AddToScheme(scheme))
	utilruntime.Must(storagev1.AddToScheme(scheme))
	decoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// object is one YAML document, decoded.
type object struct {
	where string // file and document number, for messages
	kind  string
	obj   runtime.Object
}

// decodeDocs splits a YAML stream on "---" and decodes each non-empty
// document strictly.
func decodeDocs(where string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %v", where, i, err)
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue // only comments
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %v", where, i, err)
		}
		objs = append(objs, object{where: fmt.Sprintf("%s document %d", where, i), kind: gvk.Kind, obj: obj})
	}
}

// manifests is every object of every manifest file, by file.
type manifests struct {
	byFile map[string][]object
	all    []object
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{byFile: map[string][]object{}}
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		want, ok := kindsByFile[f]
		if !ok {
			t.Errorf("%s: a manifest the test does not know (add it to kindsByFile)", f)
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeDocs(f, data)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
		for _, o := range objs {
			if !slices.Contains(want, o.kind) {
				t.Errorf("%s: kind %s, want one of %v", o.where, o.kind, want)
			}
		}
		m.byFile[f] = objs
		m.all = append(m.all, objs...)
	}
	for f := range kindsByFile {
		if _, ok := m.byFile[f]; !ok && !t.Failed() {
			t.Errorf("%s is missing", f)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// only returns the objects of type T in file (every file when file is "").
func only[T runtime.Object](m *manifests, file string) []T {
	var out []T
	for _, o := range m.all {
		if file != "" && !strings.HasPrefix(o.where, file+" ") {
			continue
		}
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the single object of type T in file.
func one[T runtime.Object](t *testing.T, m *manifests, file string) T {
	t.Helper()
	objs := only[T](m, file)
	if len(objs) != 1 {
		var zero T
		t.Fatalf("%s: %d objects of type %T, want 1", file, len(objs), zero)
	}
	return objs[0]
}

// TestManifestsDecodeStrictly: every document of every manifest decodes
// into its k8s.io/api type with no unknown field, and is of a kind its file
// is for (load fails the test otherwise).
func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	n := 0
	for _, objs := range m.byFile {
		n += len(objs)
	}
	t.Logf("%d files, %d objects", len(m.byFile), n)
}

// TestStrictDecodingCatchesTypos: the decoder this test relies on does fail
// on a misspelt field, a misplaced one, a duplicated one and a kind that does
// not exist, so a typo in a manifest fails `make test`.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	node, err := os.ReadFile("node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeDocs("node.yaml", node); err != nil {
		t.Fatalf("node.yaml itself: %v", err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"misspelt field", "mountPropagation: Bidirectional", "mountPropogation: Bidirectional"},
		{"field at the wrong level", "      serviceAccountName:", "      serviceAccount_Name:"},
		{"duplicated field", "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          imagePullPolicy: Always\n"},
		{"unknown kind", "kind: DaemonSet", "kind: DeamonSet"},
		{"wrong apiVersion", "apiVersion: apps/v1", "apiVersion: apps/v1beta3"},
		{"wrong value type", "containerPort: 9808", "containerPort: healthz-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(node, []byte(tc.old)) {
				t.Fatalf("node.yaml no longer holds %q", tc.old)
			}
			broken := bytes.Replace(node, []byte(tc.old), []byte(tc.new), 1)
			if _, err := decodeDocs("node.yaml", broken); err == nil {
				t.Errorf("%q -> %q decoded without an error", tc.old, tc.new)
			} else {
				t.Logf("%v", err)
			}
		})
	}
}

// TestKustomization: kustomization.yaml lists every driver manifest (all
// but the example-*.yaml files, which need editing first) and nothing else.
func TestKustomization(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName,omitempty"`
			NewTag  string `json:"newTag,omitempty"`
		} `json:"images,omitempty"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	var want []string
	for f := range kindsByFile {
		if !strings.HasPrefix(f, "example-") {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want %v", got, want)
	}
}

// TestDriverName: the CSIDriver, the registration paths, the StorageClass
// and the PersistentVolumes all name the same driver.
func TestDriverName(t *testing.T) {
	m := load(t)
	if d := one[*storagev1.CSIDriver](t, m, "csidriver.yaml"); d.Name != driverName {
		t.Errorf("CSIDriver %q, want %q", d.Name, driverName)
	}
	for _, sc := range only[*storagev1.StorageClass](m, "") {
		if sc.Provisioner != driverName {
			t.Errorf("StorageClass %s: provisioner %q, want %q", sc.Name, sc.Provisioner, driverName)
		}
	}
	pvs := only[*corev1.PersistentVolume](m, "")
	if len(pvs) == 0 {
		t.Error("no PersistentVolume")
	}
	for _, pv := range pvs {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
			t.Errorf("PersistentVolume %s: not a %s volume", pv.Name, driverName)
		}
	}
}

// TestCSIDriver: no attach, pod info on mount, and no fsGroup ownership
// changes (the kubelet would walk the whole bucket).
func TestCSIDriver(t *testing.T) {
	m := load(t)
	d := one[*storagev1.CSIDriver](t, m, "csidriver.yaml")
	if d.Spec.AttachRequired == nil || *d.Spec.AttachRequired {
		t.Error("attachRequired must be false")
	}
	if d.Spec.PodInfoOnMount == nil || !*d.Spec.PodInfoOnMount {
		t.Error("podInfoOnMount must be true")
	}
	if d.Spec.FSGroupPolicy == nil || *d.Spec.FSGroupPolicy != storagev1.NoneFSGroupPolicy {
		t.Errorf("fsGroupPolicy %v, want None", d.Spec.FSGroupPolicy)
	}
}

// TestNamespaces: the driver's namespaced objects are all in the bucketfs
// namespace, which namespace.yaml creates and labels privileged.
func TestNamespaces(t *testing.T) {
	m := load(t)
	ns := one[*corev1.Namespace](t, m, "namespace.yaml")
	if ns.Name != namespace || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s labels %v", ns.Name, ns.Labels)
	}
	for _, o := range m.all {
		if strings.HasPrefix(o.where, "example-") {
			continue
		}
		meta, ok := o.obj.(interface{ GetNamespace() string })
		if !ok {
			t.Fatalf("%s: no metadata", o.where)
		}
		switch o.kind {
		case "Namespace", "CSIDriver", "ClusterRole", "ClusterRoleBinding":
			if meta.GetNamespace() != "" {
				t.Errorf("%s: a cluster-scoped %s with namespace %q", o.where, o.kind, meta.GetNamespace())
			}
		default:
			if meta.GetNamespace() != namespace {
				t.Errorf("%s: %s in namespace %q, want %q", o.where, o.kind, meta.GetNamespace(), namespace)
			}
		}
	}
}

// TestImages: the driver runs the image `make image` builds, never pulled
// for :latest, and the sidecars run the pinned upstream images; example
// workloads pin a tag too.
func TestImages(t *testing.T) {
	m := load(t)
	want := map[string]string{
		"node.yaml/bucketfs":              bucketfsImage,
		"node.yaml/node-driver-registrar": registrarImage,
		"node.yaml/liveness-probe":        livenessImage,
		"controller.yaml/bucketfs":        bucketfsImage,
		"controller.yaml/csi-provisioner": provisionerImage,
	}
	got := map[string]string{}
	for _, file := range []string{"node.yaml", "controller.yaml"} {
		for _, c := range podSpec(t, m, file).Containers {
			got[file+"/"+c.Name] = c.Image
			if c.Image == bucketfsImage && c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("%s/%s: imagePullPolicy %q: the kubelet would try to pull %s instead of the loaded image", file, c.Name, c.ImagePullPolicy, c.Image)
			}
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: image %q, want %q", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: a container the test does not know", k)
		}
	}
	for _, p := range only[*corev1.Pod](m, "") {
		for _, c := range p.Spec.Containers {
			i := strings.LastIndex(c.Image, ":")
			if i < 0 || strings.Contains(c.Image[i:], "/") || c.Image[i+1:] == "latest" {
				t.Errorf("pod %s container %s: image %q has no pinned tag", p.Name, c.Name, c.Image)
			}
		}
	}
}

// podSpec is the pod template of the single workload in file.
func podSpec(t *testing.T, m *manifests, file string) *corev1.PodSpec {
	t.Helper()
	if ds := only[*appsv1.DaemonSet](m, file); len(ds) == 1 {
		return &ds[0].Spec.Template.Spec
	}
	if d := only[*appsv1.Deployment](m, file); len(d) == 1 {
		return &d[0].Spec.Template.Spec
	}
	t.Fatalf("%s: no single DaemonSet or Deployment", file)
	return nil
}

// container returns the container called name.
func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// argValue is the value of --name=value in args ("" and false if absent).
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// service reports whether `bucketfs csi` with args serves a service: the
// flags --controller and --node are booleans that default to true, so a
// service is off only with --NAME=false.
func service(args []string, flag string) bool {
	on := true
	for _, a := range args {
		switch a {
		case flag, flag + "=true":
			on = true
		case flag + "=false":
			on = false
		}
	}
	return on
}

// mountOf is c's mount of volume vol.
func mountOf(c *corev1.Container, vol string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == vol {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkPodSpec checks what holds in any pod: volumes are unique and each
// is mounted, every mount names a volume, $(VAR) references in args name
// env vars of the container, probes name declared ports, and
// Bidirectional propagation is only on privileged containers.
func checkPodSpec(t *testing.T, where string, spec *corev1.PodSpec) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range spec.Volumes {
		if vols[v.Name] {
			t.Errorf("%s: volume %s twice", where, v.Name)
		}
		vols[v.Name] = true
	}
	used := map[string]bool{}
	for _, c := range spec.Containers {
		paths := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			if !vols[vm.Name] {
				t.Errorf("%s/%s: mounts volume %s, which the pod does not have", where, c.Name, vm.Name)
			}
			used[vm.Name] = true
			if paths[vm.MountPath] {
				t.Errorf("%s/%s: two mounts at %s", where, c.Name, vm.MountPath)
			}
			paths[vm.MountPath] = true
			if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional &&
				(c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged) {
				t.Errorf("%s/%s: Bidirectional propagation needs a privileged container", where, c.Name)
			}
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for _, a := range slices.Concat(c.Command, c.Args) {
			for _, ref := range envRef.FindAllStringSubmatch(a, -1) {
				if !env[ref[1]] {
					t.Errorf("%s/%s: %q refers to $(%s), which is not in its env", where, c.Name, a, ref[1])
				}
			}
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil {
				continue
			}
			if name := pr.HTTPGet.Port.StrVal; name != "" {
				if _, ok := ports[name]; !ok {
					t.Errorf("%s/%s: probe on port %q, which the container does not declare", where, c.Name, name)
				}
			}
		}
	}
	for v := range vols {
		if !used[v] {
			t.Errorf("%s: volume %s is mounted by no container", where, v)
		}
	}
}

// TestNodeDaemonSet: the node plugin's volumes and mounts line up with the
// kubelet's paths, the socket the registrar and the liveness probe use is
// the one the driver serves, and the host paths the host's systemd units
// get are the same inside the container.
func TestNodeDaemonSet(t *testing.T) {
	m := load(t)
	spec := podSpec(t, m, "node.yaml")
	checkPodSpec(t, "node.yaml", spec)

	// hostPath volumes: path and type.
	wantHost := map[string]struct {
		path string
		typ  corev1.HostPathType
	}{
		"plugin-dir":       {kubeletDir + "/plugins/" + driverName, corev1.HostPathDirectoryOrCreate},
		"registration-dir": {kubeletDir + "/plugins_registry", corev1.HostPathDirectory},
		"kubelet-dir":      {kubeletDir, corev1.HostPathDirectory},
		"fuse-device":      {"/dev/fuse", corev1.HostPathCharDev},
		"systemd-run":      {"/run/systemd", corev1.HostPathDirectoryOrCreate},
		"state-dir":        {stateDir, corev1.HostPathDirectoryOrCreate},
		"cache-dir":        {cacheDir, corev1.HostPathDirectoryOrCreate},
	}
	hostPath := map[string]string{}
	for _, v := range spec.Volumes {
		w, ok := wantHost[v.Name]
		if !ok {
			t.Errorf("volume %s: not expected", v.Name)
			continue
		}
		if v.HostPath == nil || v.HostPath.Path != w.path || v.HostPath.Type == nil || *v.HostPath.Type != w.typ {
			t.Errorf("volume %s: %+v, want hostPath %s of type %s", v.Name, v.HostPath, w.path, w.typ)
			continue
		}
		hostPath[v.Name] = v.HostPath.Path
	}
	for name := range wantHost {
		if _, ok := hostPath[name]; !ok {
			t.Errorf("volume %s is missing", name)
		}
	}

	// The driver container.
	bfs := container(t, spec, "bucketfs")
	if bfs.SecurityContext == nil || bfs.SecurityContext.Privileged == nil || !*bfs.SecurityContext.Privileged {
		t.Error("bucketfs: not privileged")
	}
	if len(bfs.Args) == 0 || bfs.Args[0] != "csi" || !service(bfs.Args, "--node") || service(bfs.Args, "--controller") {
		t.Errorf("bucketfs args %q: want csi with the node service only", bfs.Args)
	}
	if v, _ := argValue(bfs.Args, "--node-id"); v != "$(NODE_NAME)" {
		t.Errorf("--node-id=%q, want $(NODE_NAME)", v)
	}
	nodeName := false
	for _, e := range bfs.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("bucketfs: NODE_NAME does not come from spec.nodeName")
	}
	endpoint, _ := argValue(bfs.Args, "--endpoint")
	sock, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok || !filepath.IsAbs(sock) {
		t.Fatalf("--endpoint=%q: want unix:///path", endpoint)
	}
	pm := mountOf(bfs, "plugin-dir")
	if pm == nil || filepath.Dir(sock) != pm.MountPath {
		t.Fatalf("the socket %s is not in the plugin-dir mount %+v", sock, pm)
	}
	if v, _ := argValue(bfs.Args, "--state-dir"); v != stateDir {
		t.Errorf("--state-dir=%q, want %s", v, stateDir)
	}
	if v, ok := argValue(bfs.Args, "--mounter"); ok && !slices.Contains([]string{"auto", "systemd", "process"}, v) {
		t.Errorf("--mounter=%q", v)
	}
	// Paths the host sees and the container sees must be the same: the
	// kubelet's target paths, and what the host's systemd units run and read.
	for _, vol := range []string{"kubelet-dir", "systemd-run", "state-dir", "cache-dir", "fuse-device"} {
		vm := mountOf(bfs, vol)
		if vm == nil {
			t.Errorf("bucketfs does not mount %s", vol)
		} else if vm.MountPath != hostPath[vol] {
			t.Errorf("bucketfs mounts %s (host %s) at %s: must be the same path", vol, hostPath[vol], vm.MountPath)
		}
	}
	if vm := mountOf(bfs, "kubelet-dir"); vm != nil && (vm.MountPropagation == nil || *vm.MountPropagation != corev1.MountPropagationBidirectional) {
		t.Error("bucketfs: the kubelet dir needs mountPropagation: Bidirectional")
	}
	for _, c := range spec.Containers {
		if c.Name != "bucketfs" && mountOf(&c, "kubelet-dir") != nil {
			t.Errorf("%s mounts the kubelet dir", c.Name)
		}
	}

	// The registrar: same socket, registered at the host path of it.
	reg := container(t, spec, "node-driver-registrar")
	if v, _ := argValue(reg.Args, "--csi-address"); v != sock {
		t.Errorf("registrar --csi-address=%q, want %s", v, sock)
	}
	if rm := mountOf(reg, "plugin-dir"); rm == nil || rm.MountPath != pm.MountPath {
		t.Errorf("registrar mounts plugin-dir at %+v, want %s", rm, pm.MountPath)
	}
	if v, _ := argValue(reg.Args, "--kubelet-registration-path"); v != hostPath["plugin-dir"]+"/"+filepath.Base(sock) {
		t.Errorf("--kubelet-registration-path=%q, want %s/%s", v, hostPath["plugin-dir"], filepath.Base(sock))
	}
	if rm := mountOf(reg, "registration-dir"); rm == nil || rm.MountPath != "/registration" {
		t.Errorf("registrar mounts registration-dir at %+v, want /registration", rm)
	}

	// The liveness probe: same socket, serving the port the driver's
	// livenessProbe asks.
	lp := container(t, spec, "liveness-probe")
	if v, _ := argValue(lp.Args, "--csi-address"); v != sock {
		t.Errorf("liveness-probe --csi-address=%q, want %s", v, sock)
	}
	if lm := mountOf(lp, "plugin-dir"); lm == nil || lm.MountPath != pm.MountPath {
		t.Errorf("liveness-probe mounts plugin-dir at %+v, want %s", lm, pm.MountPath)
	}
	port, _ := argValue(lp.Args, "--health-port")
	if bfs.LivenessProbe == nil || bfs.LivenessProbe.HTTPGet == nil {
		t.Fatal("bucketfs has no HTTP liveness probe")
	}
	var probed int32
	for _, p := range bfs.Ports {
		if p.Name == bfs.LivenessProbe.HTTPGet.Port.StrVal {
			probed = p.ContainerPort
		}
	}
	if fmt.Sprint(probed) != port {
		t.Errorf("bucketfs is probed on port %d; the liveness probe serves %q", probed, port)
	}

	if sa := spec.ServiceAccountName; !slices.ContainsFunc(only[*corev1.ServiceAccount](m, "rbac-node.yaml"), func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
		t.Errorf("serviceAccountName %q is not in rbac-node.yaml", sa)
	}
}

// TestControllerDeployment: the provisioner and the driver share a socket,
// the provisioner passes claim names (--extra-create-metadata), and its
// service account may do what external-provisioner needs.
func TestControllerDeployment(t *testing.T) {
	m := load(t)
	spec := podSpec(t, m, "controller.yaml")
	checkPodSpec(t, "controller.yaml", spec)

	bfs := container(t, spec, "bucketfs")
	if len(bfs.Args) == 0 || bfs.Args[0] != "csi" || !service(bfs.Args, "--controller") || service(bfs.Args, "--node") {
		t.Errorf("bucketfs args %q: want csi with the controller service only", bfs.Args)
	}
	endpoint, _ := argValue(bfs.Args, "--endpoint")
	sock, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		t.Fatalf("--endpoint=%q", endpoint)
	}
	prov := container(t, spec, "csi-provisioner")
	if v, _ := argValue(prov.Args, "--csi-address"); v != sock {
		t.Errorf("provisioner --csi-address=%q, want %s", v, sock)
	}
	if !slices.Contains(prov.Args, "--extra-create-metadata") {
		t.Error("the provisioner needs --extra-create-metadata (claim names reach CreateVolume)")
	}
	for _, c := range []*corev1.Container{bfs, prov} {
		if vm := mountOf(c, "socket-dir"); vm == nil || vm.MountPath != filepath.Dir(sock) {
			t.Errorf("%s mounts socket-dir at %+v, want %s", c.Name, vm, filepath.Dir(sock))
		}
	}
	for _, v := range spec.Volumes {
		if v.Name == "socket-dir" && v.EmptyDir == nil {
			t.Error("socket-dir should be an emptyDir")
		}
	}

	// RBAC: the service account is bound to a ClusterRole with what the
	// provisioner does, and to the lease Role when it elects a leader.
	sa := spec.ServiceAccountName
	if !slices.ContainsFunc(only[*corev1.ServiceAccount](m, "rbac-controller.yaml"), func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
		t.Fatalf("serviceAccountName %q is not in rbac-controller.yaml", sa)
	}
	bound := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == namespace
		})
	}
	var rules []rbacv1.PolicyRule
	for _, b := range only[*rbacv1.ClusterRoleBinding](m, "") {
		if !bound(b.Subjects) || b.RoleRef.Kind != "ClusterRole" {
			continue
		}
		for _, r := range only[*rbacv1.ClusterRole](m, "") {
			if r.Name == b.RoleRef.Name {
				rules = append(rules, r.Rules...)
			}
		}
	}
	for _, need := range []struct{ group, resource, verb string }{
		{"", "secrets", "get"},
		{"", "persistentvolumes", "create"},
		{"", "persistentvolumes", "delete"},
		{"", "persistentvolumes", "watch"},
		{"", "persistentvolumeclaims", "update"},
		{"", "persistentvolumeclaims", "watch"},
		{"storage.k8s.io", "storageclasses", "watch"},
		{"", "events", "create"},
		{"storage.k8s.io", "csinodes", "list"},
		{"", "nodes", "list"},
	} {
		if !allows(rules, need.group, need.resource, need.verb) {
			t.Errorf("the provisioner may not %s %s", need.verb, need.resource)
		}
	}
	if slices.Contains(prov.Args, "--leader-election") {
		var leaseRules []rbacv1.PolicyRule
		for _, b := range only[*rbacv1.RoleBinding](m, "") {
			if !bound(b.Subjects) || b.Namespace != namespace {
				continue
			}
			for _, r := range only[*rbacv1.Role](m, "") {
				if r.Name == b.RoleRef.Name && r.Namespace == b.Namespace {
					leaseRules = append(leaseRules, r.Rules...)
				}
			}
		}
		for _, verb := range []string{"get", "create", "update"} {
			if !allows(leaseRules, "coordination.k8s.io", "leases", verb) {
				t.Errorf("leader election: may not %s leases in %s", verb, namespace)
			}
		}
	}
}

// allows reports whether rules grant verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// mountFlags are the flags of `bucketfs mount`, read from the flags table
// of the top-level README.md.
func mountFlags(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Rows look like "| `--uid N`, `--gid N` | default | meaning |".
	flags := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)").FindAllStringSubmatch(cell, -1) {
			flags[m[1]] = true
		}
	}
	if len(flags) < 20 {
		t.Fatalf("read %d flags from README.md's table", len(flags))
	}
	return flags
}

// checkMountOptions: a mountOptions value is a comma list of documented
// bucketfs flags without their dashes.
func checkMountOptions(t *testing.T, where, opts string, flags map[string]bool) {
	t.Helper()
	for _, o := range strings.Split(opts, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(o), "=")
		if strings.HasPrefix(name, "-") || !flags[name] {
			t.Errorf("%s: mount option %q is not a bucketfs mount flag (without dashes)", where, o)
		}
	}
}

// TestExamples: the StorageClass, the static PersistentVolume and its
// claim, the dynamic claim, the Secret and the pod refer to each other
// correctly and use only the driver's parameter names.
func TestExamples(t *testing.T) {
	m := load(t)
	flags := mountFlags(t)

	secret := one[*corev1.Secret](t, m, "example-secret.yaml")
	if secret.Namespace != namespace {
		t.Errorf("secret in %q, want %s", secret.Namespace, namespace)
	}
	keys := map[string]bool{}
	for k := range secret.StringData {
		keys[k] = true
	}
	for k := range secret.Data {
		keys[k] = true
	}
	for k := range keys {
		if !slices.Contains(secretKeys, k) {
			t.Errorf("secret key %q: the driver reads %v", k, secretKeys)
		}
	}
	if !keys["accessKeyID"] || !keys["secretAccessKey"] {
		t.Error("the secret needs accessKeyID and secretAccessKey")
	}
	refersToSecret := func(where, name, ns string) {
		if name != secret.Name || ns != secret.Namespace {
			t.Errorf("%s: secret %s/%s, want %s/%s", where, ns, name, secret.Namespace, secret.Name)
		}
	}

	sc := one[*storagev1.StorageClass](t, m, "example-storageclass.yaml")
	for k := range sc.Parameters {
		if !slices.Contains(scParams, k) {
			t.Errorf("StorageClass parameter %q: the driver takes %v", k, scParams)
		}
	}
	if sc.Parameters["bucket"] == "" {
		t.Error("StorageClass: no bucket")
	}
	if sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("StorageClass reclaimPolicy %v, want Delete", sc.ReclaimPolicy)
	}
	if sc.Parameters["endpoint"] != "https://t3.storage.dev" || sc.Parameters["region"] != "auto" {
		t.Errorf("StorageClass: endpoint %q region %q, want Tigris's", sc.Parameters["endpoint"], sc.Parameters["region"])
	}
	refersToSecret("StorageClass provisioner secret", sc.Parameters["csi.storage.k8s.io/provisioner-secret-name"], sc.Parameters["csi.storage.k8s.io/provisioner-secret-namespace"])
	refersToSecret("StorageClass node-publish secret", sc.Parameters["csi.storage.k8s.io/node-publish-secret-name"], sc.Parameters["csi.storage.k8s.io/node-publish-secret-namespace"])
	if o, ok := sc.Parameters["mountOptions"]; ok {
		checkMountOptions(t, "StorageClass", o, flags)
	}

	pv := one[*corev1.PersistentVolume](t, m, "example-static-pv.yaml")
	for k := range pv.Spec.CSI.VolumeAttributes {
		if !slices.Contains(pvAttributes, k) {
			t.Errorf("PersistentVolume attribute %q: the driver takes %v", k, pvAttributes)
		}
	}
	if pv.Spec.CSI.VolumeAttributes["bucket"] == "" || pv.Spec.CSI.VolumeHandle == "" {
		t.Error("PersistentVolume: no bucket or volumeHandle")
	}
	if o, ok := pv.Spec.CSI.VolumeAttributes["mountOptions"]; ok {
		checkMountOptions(t, "PersistentVolume", o, flags)
	}
	if r := pv.Spec.CSI.NodePublishSecretRef; r == nil {
		t.Error("PersistentVolume: no nodePublishSecretRef")
	} else {
		refersToSecret("PersistentVolume", r.Name, r.Namespace)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("static PersistentVolume: reclaim policy %s, want Retain", pv.Spec.PersistentVolumeReclaimPolicy)
	}
	if pv.Spec.StorageClassName != "" {
		t.Errorf("static PersistentVolume: storageClassName %q, want \"\"", pv.Spec.StorageClassName)
	}

	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range only[*corev1.PersistentVolumeClaim](m, "") {
		claims[c.Name] = c
	}
	static := one[*corev1.PersistentVolumeClaim](t, m, "example-static-pv.yaml")
	if static.Spec.VolumeName != pv.Name || static.Spec.StorageClassName == nil || *static.Spec.StorageClassName != "" {
		t.Errorf("static claim: volumeName %q storageClassName %v, want %q and \"\"", static.Spec.VolumeName, static.Spec.StorageClassName, pv.Name)
	}
	for _, mode := range static.Spec.AccessModes {
		if !slices.Contains(pv.Spec.AccessModes, mode) {
			t.Errorf("static claim asks %s, which the PersistentVolume does not offer", mode)
		}
	}
	if !slices.Contains(pv.Spec.AccessModes, corev1.ReadWriteMany) {
		t.Error("static PersistentVolume: not ReadWriteMany")
	}
	dynamic := one[*corev1.PersistentVolumeClaim](t, m, "example-dynamic-pvc.yaml")
	if dynamic.Spec.StorageClassName == nil || *dynamic.Spec.StorageClassName != sc.Name {
		t.Errorf("dynamic claim: storageClassName %v, want %s", dynamic.Spec.StorageClassName, sc.Name)
	}

	pod := one[*corev1.Pod](t, m, "example-pod.yaml")
	checkPodSpec(t, "example-pod.yaml", &pod.Spec)
	readOnly := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			t.Errorf("pod volume %s: not a claim", v.Name)
			continue
		}
		if claims[v.PersistentVolumeClaim.ClaimName] == nil {
			t.Errorf("pod volume %s: claim %q is in no example", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
		readOnly[v.Name] = v.PersistentVolumeClaim.ReadOnly
	}
	var sawRO, sawRW bool
	for _, c := range pod.Spec.Containers {
		for _, vm := range c.VolumeMounts {
			if readOnly[vm.Name] && !vm.ReadOnly {
				t.Errorf("pod %s: mounts read-only volume %s without readOnly", c.Name, vm.Name)
			}
			sawRO = sawRO || readOnly[vm.Name]
			sawRW = sawRW || !vm.ReadOnly
		}
	}
	if !sawRO || !sawRW {
		t.Error("the example pod should read one volume read-only and write another")
	}
}

// TestReadmeSnippets: every ```yaml block of README.md decodes strictly too,
// and names the driver where it names one.
func TestReadmeSnippets(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	flags := mountFlags(t)
	blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllSubmatch(data, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no yaml blocks")
	}
	for i, b := range blocks {
		objs, err := decodeDocs(fmt.Sprintf("README.md yaml block %d", i+1), b[1])
		if err != nil {
			t.Error(err)
			continue
		}
		for _, o := range objs {
			switch v := o.obj.(type) {
			case *storagev1.StorageClass:
				if v.Provisioner != driverName {
					t.Errorf("%s: provisioner %q", o.where, v.Provisioner)
				}
				for k := range v.Parameters {
					if !slices.Contains(scParams, k) {
						t.Errorf("%s: parameter %q", o.where, k)
					}
				}
				if opts, ok := v.Parameters["mountOptions"]; ok {
					checkMountOptions(t, o.where, opts, flags)
				}
			case *corev1.PersistentVolume:
				if v.Spec.CSI == nil || v.Spec.CSI.Driver != driverName {
					t.Errorf("%s: not a %s volume", o.where, driverName)
					continue
				}
				for k := range v.Spec.CSI.VolumeAttributes {
					if !slices.Contains(pvAttributes, k) {
						t.Errorf("%s: attribute %q", o.where, k)
					}
				}
				if opts, ok := v.Spec.CSI.VolumeAttributes["mountOptions"]; ok {
					checkMountOptions(t, o.where, opts, flags)
				}
			case *corev1.Pod:
				checkPodSpec(t, o.where, &v.Spec)
			}
		}
	}
}
