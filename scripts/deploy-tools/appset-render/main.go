// Renders what Argo CD's ApplicationSet controller would make of manifests/argocd for a set
// of registered clusters: the clusters generator (label selectors over each cluster
// Secret's labels) and goTemplate rendering of every string of the template, with the
// parameters the controller gives (name, nameNormalized, server, metadata.labels,
// metadata.annotations), Go's text/template with Sprig, and the ApplicationSet's
// goTemplateOptions. scripts/check-deploy.sh checks what each cluster gets.
//
// usage: appset-render RENDERED_ARGOCD_YAML CLUSTERS_YAML   (prints the Applications as JSON)
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

type cluster struct {
	Name        string            `json:"name"`
	Server      string            `json:"server"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type requirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

type selector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []requirement     `json:"matchExpressions"`
}

func (s selector) matches(labels map[string]string) bool {
	for key, value := range s.MatchLabels {
		if labels[key] != value {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		value, present := labels[r.Key]
		contains := false
		for _, v := range r.Values {
			contains = contains || v == value
		}
		switch r.Operator {
		case "In":
			if !present || !contains {
				return false
			}
		case "NotIn":
			if present && contains {
				return false
			}
		case "Exists":
			if !present {
				return false
			}
		case "DoesNotExist":
			if present {
				return false
			}
		default:
			fail("unknown selector operator %q", r.Operator)
		}
	}
	return true
}

var notDNS = regexp.MustCompile(`[^a-z0-9.-]`)

func params(c cluster) map[string]any {
	return map[string]any{
		"name":           c.Name,
		"nameNormalized": notDNS.ReplaceAllString(strings.ToLower(c.Name), "-"),
		"server":         c.Server,
		"metadata":       map[string]any{"labels": c.Labels, "annotations": c.Annotations},
	}
}

func render(value any, data map[string]any, options []string) any {
	switch v := value.(type) {
	case string:
		funcs := sprig.TxtFuncMap()
		delete(funcs, "env")
		delete(funcs, "expandenv")
		t, err := template.New("").Funcs(funcs).Option(options...).Parse(v)
		if err != nil {
			fail("template %q: %v", v, err)
		}
		var out bytes.Buffer
		if err := t.Execute(&out, data); err != nil {
			fail("template %q: %v", v, err)
		}
		return out.String()
	case map[string]any:
		rendered := map[string]any{}
		for key, item := range v {
			rendered[key] = render(item, data, options)
		}
		return rendered
	case []any:
		rendered := make([]any, len(v))
		for i, item := range v {
			rendered[i] = render(item, data, options)
		}
		return rendered
	default:
		return v
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: appset-render RENDERED_ARGOCD_YAML CLUSTERS_YAML")
	}
	manifests, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	clustersText, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	var clusters []cluster
	if err := yaml.Unmarshal(clustersText, &clusters); err != nil {
		fail("%s: %v", os.Args[2], err)
	}
	applications := []any{}
	for _, document := range strings.Split(string(manifests), "\n---\n") {
		var object struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				GoTemplate        bool     `json:"goTemplate"`
				GoTemplateOptions []string `json:"goTemplateOptions"`
				Generators        []struct {
					Clusters *struct {
						Selector selector `json:"selector"`
					} `json:"clusters"`
				} `json:"generators"`
				Template map[string]any `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(document), &object); err != nil {
			fail("%v", err)
		}
		if object.Kind != "ApplicationSet" {
			continue
		}
		if !object.Spec.GoTemplate {
			fail("ApplicationSet %s: only goTemplate sets are rendered", object.Metadata.Name)
		}
		for _, generator := range object.Spec.Generators {
			if generator.Clusters == nil {
				fail("ApplicationSet %s: only the clusters generator is rendered", object.Metadata.Name)
			}
			for _, c := range clusters {
				if generator.Clusters.Selector.matches(c.Labels) {
					application := render(object.Spec.Template, params(c), object.Spec.GoTemplateOptions)
					applications = append(applications, map[string]any{
						"applicationSet": object.Metadata.Name,
						"cluster":        c.Name,
						"application":    application,
					})
				}
			}
		}
	}
	out, _ := json.MarshalIndent(applications, "", "  ")
	fmt.Println(string(out))
}
