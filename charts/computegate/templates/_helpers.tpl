{{/* Names. The two webhook configurations and the CRDs have fixed names (one install per cluster). */}}
{{- define "computegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "computegate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "computegate.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "computegate.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "computegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "computegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "computegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "computegate.labels" -}}
helm.sh/chart: {{ include "computegate.chart" . }}
{{ include "computegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: computegate
{{- end }}

{{- define "computegate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "computegate.serviceAccountName" -}}
{{- default (include "computegate.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* Whether the cluster serves the Prometheus Operator's API (ServiceMonitor, PrometheusRule). */}}
{{- define "computegate.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{- define "computegate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "computegate.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "computegate.certificateName" -}}
{{- printf "%s-serving" (include "computegate.fullname" .) }}
{{- end }}

{{/* The namespaces the webhooks skip: the configured ones plus the release namespace, sorted. */}}
{{- define "computegate.exemptNamespaceList" -}}
{{- $all := append (.Values.webhook.exemptNamespaces | default list) .Release.Namespace }}
{{- toYaml (sortAlpha (uniq $all)) }}
{{- end }}

{{/* A YAML list of exempt namespaces, for the generated webhook configurations. */}}
{{- define "computegate.exemptNamespaces" -}}
{{- include "computegate.exemptNamespaceList" . }}
{{- end }}

{{/* Annotations of the generated webhook configurations (cert-manager's CA injection). */}}
{{- define "computegate.webhookAnnotations" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "computegate.certificateName" .) }}
{{- end }}
{{- end }}

{{/* Annotations of the generated CRDs: kept on uninstall, as Kyverno's are. */}}
{{- define "computegate.crdAnnotations" -}}
{{- if .Values.crds.keep -}}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

