{{/* Names and labels. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ ternary "sidecar" "gateway" (eq .Values.mode "sidecar") }}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Pods can be more than one: PDB and spread make sense. */}}
{{- define "portcullis.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "portcullis.terminationGracePeriodSeconds" -}}
{{- add (int .Values.drain.preStopSeconds) (int .Values.drain.seconds) 5 -}}
{{- end -}}

{{/*
The policy the gateway runs: `.Values.policy` with the keys the chart owns filled in, so that listeners,
probes, the Service and the drain period agree. Rendered into the ConfigMap and hashed into the pod
annotation (a change rolls the pods).
*/}}
{{- define "portcullis.policy" -}}
{{- $v := .Values -}}
{{- $p := deepCopy $v.policy -}}
{{- range $key := list "listeners" "admin" -}}
{{- if hasKey $p $key -}}
{{- fail (printf "policy.%s is written by the chart: use the values listener, tls, admin and bindAddress instead" $key) -}}
{{- end -}}
{{- end -}}
{{- $production := eq (default "development" $p.mode) "production" -}}
{{- $listeners := list -}}
{{- $plain := dict "name" "http" "address" (printf "%s:%d" $v.bindAddress (int $v.listener.port)) -}}
{{- if and $v.tls.enabled $v.listener.redirectToHttps -}}
{{- $_ := set $plain "redirect_to_https" true -}}
{{- $_ := set $plain "https_port" (int $v.service.httpsPort) -}}
{{- end -}}
{{- $listeners = append $listeners $plain -}}
{{- if $v.tls.enabled -}}
{{- $listeners = append $listeners (dict "name" "https" "address" (printf "%s:%d" $v.bindAddress (int $v.tls.port)) "tls" (dict "cert" "/etc/portcullis/tls/tls.crt" "key" "/etc/portcullis/tls/tls.key")) -}}
{{- end -}}
{{- if and $production (not (and $v.tls.enabled $v.listener.redirectToHttps)) (empty $p.trusted_proxies) -}}
{{- fail "a production policy needs TLS (tls.enabled with listener.redirectToHttps) or, for a plain listener behind a TLS-terminating proxy, that proxy's addresses in policy.trusted_proxies" -}}
{{- end -}}
{{- $_ := set $p "listeners" $listeners -}}
{{- $admin := dict "address" (printf "%s:%d" $v.bindAddress (int $v.admin.port)) -}}
{{- if $v.networkPolicy.enabled -}}
{{- $_ := set $admin "protected_by" "network_policy" -}}
{{- else if $v.admin.protectedBy -}}
{{- $_ := set $admin "protected_by" $v.admin.protectedBy -}}
{{- else if $production -}}
{{- fail "the admin port listens on the pod IP and has no authentication: enable networkPolicy, or set admin.protectedBy to what else keeps it private (firewall)" -}}
{{- end -}}
{{- $_ := set $p "admin" $admin -}}
{{- $limits := deepCopy (default dict $p.limits) -}}
{{- $_ := set $limits "shutdown_grace" (printf "%ds" (int $v.drain.seconds)) -}}
{{- $_ := set $p "limits" $limits -}}
{{- if eq $v.mode "sidecar" -}}
{{- $upstreams := deepCopy (default dict $p.upstreams) -}}
{{- if not (hasKey $upstreams "app") -}}
{{- $_ := set $upstreams "app" (dict "url" (printf "http://127.0.0.1:%d" (int $v.app.port))) -}}
{{- end -}}
{{- $_ := set $p "upstreams" $upstreams -}}
{{- end -}}
{{- toYaml $p -}}
{{- end -}}
