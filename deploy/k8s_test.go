package deploy

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"imb/authz"
	"imb/broker"
)

// k8sObjects are the manifests of deploy/k8s, each decoded strictly into its
// Kubernetes API type: an unknown or misspelt field is an error, as the API
// server's strict field validation makes it.
type k8sObjects struct {
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
}

func readK8s(t *testing.T) k8sObjects {
	t.Helper()
	o := k8sObjects{map[string]*corev1.ConfigMap{}, map[string]*corev1.Service{}, map[string]*appsv1.Deployment{}, map[string]*appsv1.StatefulSet{}}
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			var obj interface{ GetName() string }
			switch head.APIVersion + " " + head.Kind {
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "apps/v1 StatefulSet":
				obj = &appsv1.StatefulSet{}
			default:
				t.Fatalf("%s document %d: %s %s is not a kind this test knows", f, i+1, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i+1, head.Kind, err)
			}
			switch v := obj.(type) {
			case *corev1.ConfigMap:
				o.configMaps[v.Name] = v
			case *corev1.Service:
				o.services[v.Name] = v
			case *appsv1.Deployment:
				o.deployments[v.Name] = v
			case *appsv1.StatefulSet:
				o.statefulSets[v.Name] = v
			}
		}
	}
	return o
}

// pods are the pod templates by workload name, with the replicas.
func (o k8sObjects) pods() map[string]struct {
	tmpl     corev1.PodTemplateSpec
	replicas int
} {
	out := map[string]struct {
		tmpl     corev1.PodTemplateSpec
		replicas int
	}{}
	for n, d := range o.deployments {
		out[n] = struct {
			tmpl     corev1.PodTemplateSpec
			replicas int
		}{d.Spec.Template, int(*d.Spec.Replicas)}
	}
	for n, s := range o.statefulSets {
		out[n] = struct {
			tmpl     corev1.PodTemplateSpec
			replicas int
		}{s.Spec.Template, int(*s.Spec.Replicas)}
	}
	return out
}

// TestK8sManifests: the topology of docs/cluster.md (imb Deployment behind a
// Service, a NATS StatefulSet with JetStream) holds together: selectors select,
// named ports and probes exist, every config map and secret a pod mounts is
// named, imb's configuration and policy load as imb loads them, and every NATS
// URL imb joins and every route NATS dials is a pod of the NATS StatefulSet.
func TestK8sManifests(t *testing.T) {
	o := readK8s(t)
	pods := o.pods()
	for name, svc := range o.services {
		matched := 0
		for wl, p := range pods {
			if !labelsMatch(svc.Spec.Selector, p.tmpl.Labels) {
				continue
			}
			matched++
			for _, sp := range svc.Spec.Ports {
				if sp.TargetPort.StrVal != "" && !hasPort(p.tmpl.Spec, sp.TargetPort.StrVal) {
					t.Errorf("service %s port %s: no container port named %q in %s", name, sp.Name, sp.TargetPort.StrVal, wl)
				}
			}
		}
		if matched != 1 {
			t.Errorf("service %s selects %d workloads, want 1", name, matched)
		}
	}
	for wl, p := range pods {
		for _, c := range p.tmpl.Spec.Containers {
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					t.Errorf("%s/%s: readiness and liveness are HTTP probes", wl, c.Name)
					continue
				}
				if !hasPort(p.tmpl.Spec, pr.HTTPGet.Port.StrVal) {
					t.Errorf("%s/%s: probe on port %q, which the container does not name", wl, c.Name, pr.HTTPGet.Port.StrVal)
				}
			}
			for _, m := range c.VolumeMounts {
				claimed := false
				if st := o.statefulSets[wl]; st != nil {
					claimed = slices.ContainsFunc(st.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name })
				}
				if !claimed && !slices.ContainsFunc(p.tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
					t.Errorf("%s/%s mounts %s, which is not a volume", wl, c.Name, m.Name)
				}
			}
		}
		for _, v := range p.tmpl.Spec.Volumes {
			if v.ConfigMap != nil && o.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s names config map %s, which is not in deploy/k8s", wl, v.Name, v.ConfigMap.Name)
			}
		}
	}
	ss := o.statefulSets["imb-nats"]
	if ss == nil || o.services[ss.Spec.ServiceName] == nil || o.services[ss.Spec.ServiceName].Spec.ClusterIP != "None" {
		t.Fatal("the NATS StatefulSet needs its headless Service for the pods' stable names")
	}
	natsPod := regexp.MustCompile(`^` + ss.Name + `-(\d+)\.` + ss.Spec.ServiceName + `\.default\.svc\.cluster\.local$`)
	isNATSPod := func(host string) bool {
		m := natsPod.FindStringSubmatch(host)
		if m == nil {
			return false
		}
		n, _ := strconv.Atoi(m[1])
		return n < int(*ss.Spec.Replicas)
	}

	// NATS: the version imb is built and tested with, JetStream on, and routes
	// to each of its own pods.
	if img, want := ss.Spec.Template.Spec.Containers[0].Image, "nats:"+natsModuleVersion(t)+"-alpine"; img != want {
		t.Errorf("NATS image %s, but imb is built and tested with %s", img, want)
	}
	conf := o.configMaps["imb-nats"].Data["nats.conf"]
	if !strings.Contains(conf, "jetstream {") {
		t.Error("nats.conf: no jetstream block")
	}
	routes := regexp.MustCompile(`nats://([^:\s]+):6222`).FindAllStringSubmatch(conf, -1)
	if len(routes) != int(*ss.Spec.Replicas) {
		t.Errorf("nats.conf: %d routes for %d pods", len(routes), *ss.Spec.Replicas)
	}
	for _, r := range routes {
		if !isNATSPod(r[1]) {
			t.Errorf("nats.conf route %s is not a pod of the StatefulSet", r[1])
		}
	}

	// imb: its configuration as imb serve reads it, the cluster's NATS URLs, the
	// node name from the pod, the secret from the environment.
	dir := t.TempDir()
	cm := o.configMaps["imb"]
	for _, f := range []string{"imb.yaml", "topics.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(cm.Data[f]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cfg broker.Config
	if err := broker.LoadConfigFile(filepath.Join(dir, "imb.yaml"), &cfg); err != nil {
		t.Fatalf("the ConfigMap's imb.yaml: %v", err)
	}
	if _, err := authz.Load(filepath.Join(dir, "topics.yaml")); err != nil {
		t.Fatalf("the ConfigMap's topics.yaml: %v", err)
	}
	if len(cfg.Cluster.NATS) != int(*ss.Spec.Replicas) {
		t.Errorf("cluster.nats has %d URLs for %d NATS pods", len(cfg.Cluster.NATS), *ss.Spec.Replicas)
	}
	for _, u := range cfg.Cluster.NATS {
		pu, err := url.Parse(u)
		if err != nil || pu.Port() != "4222" || !isNATSPod(pu.Hostname()) {
			t.Errorf("cluster.nats %s is not a NATS pod's client port", u)
		}
	}
	if cfg.ClientSecret != "" {
		t.Error("a client secret in the ConfigMap: it comes from the Secret, through IMB_CLIENT_SECRET")
	}
	imb := o.deployments["imb"].Spec.Template.Spec.Containers[0]
	args := strings.Join(imb.Args, " ")
	if !strings.Contains(args, "--config /etc/imb/imb.yaml") || !strings.Contains(args, "--node-name $(POD_NAME)") {
		t.Errorf("imb args %q: want --config /etc/imb/imb.yaml and --node-name $(POD_NAME)", args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range imb.Env {
		env[e.Name] = e
	}
	if e := env["POD_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Error("POD_NAME must come from metadata.name")
	}
	if e := env["IMB_CLIENT_SECRET"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("IMB_CLIENT_SECRET must come from a Secret")
	}
	mounted := map[string]bool{}
	for _, m := range imb.VolumeMounts {
		mounted[m.MountPath] = true
	}
	for _, p := range []string{cfg.TLSCert, cfg.TLSKey, cfg.PolicyFile} {
		if !mounted[p] && !mounted[filepath.Dir(p)] {
			t.Errorf("imb.yaml names %s, which no volume mount provides", p)
		}
	}
	if *o.deployments["imb"].Spec.Replicas < 2 {
		t.Error("one imb pod is no cluster")
	}
}

func labelsMatch(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(spec corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}
