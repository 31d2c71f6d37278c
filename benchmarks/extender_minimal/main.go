// Command extenderminimal is the scheduler-rate benchmark's compiled floor: a kube-scheduler
// extender that echoes filter, scores one node 10 and binds through client-go, with none of
// megagpu's work. Beside the Python minimal extender (tests/e2e/fake_extender.py) it shows how
// much of the extender protocol's cost is the language and how much the protocol.
//
// Run: extenderminimal -port PORT -kubeconfig PATH -preferred NODE
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type args struct {
	NodeNames *[]string
}

type bindingArgs struct {
	PodName, PodNamespace, PodUID, Node string
}

type hostPriority struct {
	Host  string
	Score int64
}

func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	if err := json.NewDecoder(r.Body).Decode(into); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(body); err != nil {
		log.Print(err)
	}
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	preferred := flag.String("preferred", "", "the node prioritize scores 10")
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	config.QPS, config.Burst = 1000, 1000 // as the Python extenders: no client-side limit
	clients, err := kubernetes.NewForConfig(config)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/filter", func(w http.ResponseWriter, r *http.Request) {
		var a args
		if decode(w, r, &a) {
			reply(w, map[string]any{
				"NodeNames": a.NodeNames, "FailedNodes": map[string]string{},
				"FailedAndUnresolvableNodes": map[string]string{}, "Error": "",
			})
		}
	})
	http.HandleFunc("/prioritize", func(w http.ResponseWriter, r *http.Request) {
		var a args
		if !decode(w, r, &a) {
			return
		}
		scores := []hostPriority{}
		if a.NodeNames != nil {
			for _, name := range *a.NodeNames {
				score := int64(0)
				if name == *preferred {
					score = 10
				}
				scores = append(scores, hostPriority{name, score})
			}
		}
		reply(w, scores)
	})
	http.HandleFunc("/bind", func(w http.ResponseWriter, r *http.Request) {
		var a bindingArgs
		if !decode(w, r, &a) {
			return
		}
		binding := &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: a.PodName, Namespace: a.PodNamespace},
			Target:     v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: a.Node},
		}
		binding.UID = types.UID(a.PodUID)
		message := ""
		err := clients.CoreV1().Pods(a.PodNamespace).Bind(context.Background(), binding, metav1.CreateOptions{})
		if err != nil {
			message = err.Error()
		}
		reply(w, map[string]string{"Error": message})
	})
	log.Fatal(http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *port), nil))
}
