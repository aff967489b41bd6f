package cluster

import (
	"os"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kelpie/cluster/metrics"
)

func init() {
	conf := gometrics.DefaultConfig("")
	conf.HostName = ""
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false
	switch os.Getenv("KELPIE_BRIDGE") {
	case "1":
		if err := metrics.InstallGoMetrics(prometheus.NewRegistry()); err != nil {
			panic(err)
		}
	case "blackhole":
		gometrics.NewGlobal(conf, &gometrics.BlackholeSink{})
	case "inmem":
		gometrics.NewGlobal(conf, gometrics.NewInmemSink(10e9, 60e9))
	case "prom":
		s, _ := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: prometheus.NewRegistry()})
		gometrics.NewGlobal(conf, s)
	}
}
