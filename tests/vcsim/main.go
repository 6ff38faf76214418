// vcsim for the tests: govmomi's vCenter simulator with TLS and the REST (tagging) endpoints.
// Prints one JSON line {"url": ..., "thumbprint": ...} on stdout, then serves until killed.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	version := flag.String("api-version", "7.0.3", "vCenter version reported by the About info")
	username := flag.String("username", "user", "the only user name accepted by Login")
	password := flag.String("password", "pass", "the only password accepted by Login")
	datastoreGiB := flag.Int64("datastore-gib", 2048, "free space every datastore reports (its capacity is twice that)")
	icelake := flag.Bool("icelake", true, "hosts report Ice Lake CPUs (Xeon Platinum 8380, CPUID with AVX-512 VNNI)")
	datacenters := flag.Int("datacenters", 1, "datacenters to create (DC0, DC1, ...)")
	folders := flag.Int("folders", 0, "how many of the last datacenters sit in a folder (F0/DC1, with their items in F0 sub-folders)")
	pools := flag.Int("pools", 0, "child resource pools per cluster (<cluster>_RP1, ...)")
	flag.Parse()

	model := simulator.VPX()
	model.ServiceContent.About.Version = *version
	model.Datacenter, model.Folder, model.Pool = *datacenters, *folders, *pools
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	// A fresh P-256 certificate: the simulator's built-in one is RSA-1024, which OpenSSL rejects.
	fixInventory(*datastoreGiB<<30, *icelake)
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned()}}
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()

	public := *server.URL
	public.User = nil
	line, _ := json.Marshal(map[string]string{
		"url":        public.String(),
		"thumbprint": fmt.Sprintf("%X", sha1.Sum(server.Certificate().Raw)),
	})
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
	model.Remove()
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	template := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vcsim.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost", "vcsim.test"},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fixInventory makes datastore space deterministic (not the free space of /tmp) and sets the host CPUs.
func fixInventory(free int64, icelake bool) {
	for _, entity := range simulator.Map.All("Datastore") {
		ds := entity.(*simulator.Datastore)
		ds.Summary.FreeSpace, ds.Summary.Capacity = free, 2*free
		ds.Info.GetDatastoreInfo().FreeSpace = free
	}
	if !icelake {
		return
	}
	for _, entity := range simulator.Map.All("HostSystem") {
		host := entity.(*simulator.HostSystem)
		summary, hardware := *host.Summary.Hardware, *host.Hardware
		summary.CpuModel = "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz"
		hardware.CpuFeature = []types.HostCpuIdInfo{
			{Level: 0, Eax: bits(0x1B)},
			{Level: 1, Eax: bits(0x000606A6)}, // family 6, model 0x6A (Ice Lake-SP), stepping 6
			{Level: 7, Ecx: bits(1 << 11)},    // AVX512_VNNI
		}
		host.Summary.Hardware, host.Hardware = &summary, &hardware
	}
}

// bits formats a CPUID register the way vSphere reports it: 32 bits in groups of four.
func bits(value uint32) string {
	text := fmt.Sprintf("%032b", value)
	groups := make([]string, 0, 8)
	for i := 0; i < 32; i += 4 {
		groups = append(groups, text[i:i+4])
	}
	return strings.Join(groups, ":")
}
