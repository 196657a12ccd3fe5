{{- define "icestream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "icestream.headless" -}}
{{- printf "%s-headless" (include "icestream.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "icestream.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "icestream.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The founding brokers' RPC addresses: pods 0..founders-1 through the headless service. */}}
{{- define "icestream.seeds" -}}
{{- $founders := int (default .Values.replicaCount .Values.cluster.founders) -}}
{{- $full := include "icestream.fullname" . -}}
{{- $headless := include "icestream.headless" . -}}
{{- $seeds := list -}}
{{- range $i := until $founders -}}
{{- $seeds = append $seeds (printf "%s-%d.%s.%s.svc.%s:%d" $full $i $headless $.Release.Namespace $.Values.cluster.domain (int $.Values.ports.rpc)) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}
