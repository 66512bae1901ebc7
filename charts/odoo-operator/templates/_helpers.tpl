{{/* Names, labels and computed values shared by the templates. */}}

{{- define "odoo-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "odoo-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "odoo-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "odoo-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "odoo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "odoo-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "odoo-operator.labels" -}}
{{ include "odoo-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: odoo-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "odoo-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "odoo-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "odoo-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Sharding (values.shards): one Deployment, one peering object and one disruption budget per
shard, told apart by the label odoo.tenantops.io/shard; without shards, the single ones of
before, under the same names and selectors. Each helper takes (dict "root" $ "shard" name).
*/}}
{{- define "odoo-operator.shardName" -}}
{{- if .shard -}}
{{- printf "%s-%s" (include "odoo-operator.fullname" .root) .shard | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "odoo-operator.fullname" .root -}}
{{- end -}}
{{- end -}}

{{- define "odoo-operator.shardSelectorLabels" -}}
{{ include "odoo-operator.selectorLabels" .root }}
{{- if .shard }}
odoo.tenantops.io/shard: {{ .shard | quote }}
{{- end }}
{{- end -}}

{{- define "odoo-operator.peeringName" -}}
{{- if .shard -}}
{{- printf "%s-%s" .root.Values.ha.peeringName .shard -}}
{{- else -}}
{{- .root.Values.ha.peeringName -}}
{{- end -}}
{{- end -}}

{{- define "odoo-operator.replicas" -}}
{{- if .Values.ha.enabled -}}{{ .Values.ha.replicas }}{{- else -}}{{ .Values.replicas }}{{- end -}}
{{- end -}}

{{/* The webhook Service; its DNS name is the host in the webhook URL and in the certificate. */}}
{{- define "odoo-operator.webhookService" -}}
{{- printf "%s-webhook" (include "odoo-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pods of `odoo-operator webhook` (webhook.ownDeployment): a name of their own, so
that no operator Deployment's selector (name and instance) ever matches them. */}}
{{- define "odoo-operator.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-webhook" (include "odoo-operator.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pods that serve admission: the webhook Deployment's, else the operator's. */}}
{{- define "odoo-operator.webhookPodLabels" -}}
{{- if .Values.webhook.ownDeployment -}}
{{ include "odoo-operator.webhookSelectorLabels" . }}
{{- else -}}
{{ include "odoo-operator.selectorLabels" . }}
{{- end -}}
{{- end -}}

{{- define "odoo-operator.webhookHost" -}}
{{- printf "%s.%s.svc" (include "odoo-operator.webhookService" .) .Release.Namespace -}}
{{- end -}}

{{- define "odoo-operator.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "odoo-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Secrets the operator reads in its own namespace: every secretRef of the configuration. */}}
{{- define "odoo-operator.serverSecrets" -}}
{{- $names := list -}}
{{- range $section := list "postgresServers" "redisServers" "blobStores" -}}
{{- range $_, $entry := (get $.Values.config $section) -}}
{{- $names = append $names $entry.secretRef -}}
{{- if and $entry.tls $entry.tls.caSecretRef -}}
{{- $names = append $names $entry.tls.caSecretRef -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* The operator configuration file (model/config.py reads it). */}}
{{- define "odoo-operator.config" -}}
{{- $config := dict
  "operatorNamespace" .Release.Namespace
  "versions" .Values.config.versions
  "postgresServers" .Values.config.postgresServers
  "redisServers" .Values.config.redisServers
  "blobStores" .Values.config.blobStores
  "ingressControllerNamespace" .Values.config.ingressControllerNamespace
  "allowedDomains" .Values.config.allowedDomains
  "dedicatedNodePool" .Values.config.dedicatedNodePool
  "sharedNodePool" .Values.config.sharedNodePool
  "backupExecution" .Values.config.backupExecution
  "operatorImage" (default (include "odoo-operator.image" .) .Values.config.operatorImage)
  "driftIntervalSeconds" .Values.config.driftIntervalSeconds
  "upgradeConcurrency" .Values.config.upgradeConcurrency
-}}
{{- if .Values.config.filestoreStorageClass -}}
{{- $_ := set $config "filestoreStorageClass" .Values.config.filestoreStorageClass -}}
{{- end -}}
{{- if .Values.config.policy -}}
{{- $_ := set $config "policy" .Values.config.policy -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Rules the schema cannot express; each failure names the value to fix. */}}
{{- define "odoo-operator.validate" -}}
{{- range $section := list "postgresServers" "redisServers" "blobStores" -}}
{{- $defaults := list -}}
{{- range $name, $entry := (get $.Values.config $section) -}}
{{- if $entry.default -}}{{- $defaults = append $defaults $name -}}{{- end -}}
{{- end -}}
{{- if gt (len $defaults) 1 -}}
{{- fail (printf "config.%s: only one entry may be the default, got %s" $section (join ", " ($defaults | sortAlpha))) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.webhook.certManager.enabled .Values.webhook.certManager.issuerRef (not .Values.webhook.certManager.issuerRef.name) -}}
{{- fail "webhook.certManager.issuerRef needs a name (or leave it empty for a self-signed CA)" -}}
{{- end -}}
{{- end -}}

{{/*
The ValidatingWebhookConfiguration, owned by the release: it outlives every operator pod, so
admission never lapses during a rolling update or while a standby takes over. Fail-closed:
while no operator pod serves, creating or changing an OdooInstance is refused (deletions are
not gated). caBundle is the chart-generated CA; with cert-manager, its CA injector fills it.
*/}}
{{- define "odoo-operator.webhookConfiguration" -}}
{{- $root := .root }}
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: odoo.tenantops.io
  labels:
    {{- include "odoo-operator.labels" $root | nindent 4 }}
  {{- if $root.Values.webhook.certManager.enabled }}
  annotations:
    cert-manager.io/inject-ca-from: {{ printf "%s/%s-webhook" $root.Release.Namespace (include "odoo-operator.fullname" $root) }}
  {{- end }}
webhooks:
  - name: validate-instance.odoo.tenantops.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Fail
    matchPolicy: Equivalent
    timeoutSeconds: 10
    rules:
      - apiGroups: ["odoo.tenantops.io"]
        apiVersions: ["v1alpha1"]
        resources: ["odooinstances"]
        operations: ["CREATE", "UPDATE"]
        scope: Cluster
    clientConfig:
      service:
        name: {{ include "odoo-operator.webhookService" $root }}
        namespace: {{ $root.Release.Namespace }}
        port: {{ $root.Values.webhook.port }}
        path: /validate-instance
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
  # OdooBackup: annotations the operator can carry (the verify request, the record's size).
  - name: validate-backup.odoo.tenantops.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Fail
    matchPolicy: Equivalent
    timeoutSeconds: 10
    rules:
      - apiGroups: ["odoo.tenantops.io"]
        apiVersions: ["v1alpha1"]
        resources: ["odoobackups"]
        operations: ["CREATE", "UPDATE"]
        scope: Cluster
    clientConfig:
      service:
        name: {{ include "odoo-operator.webhookService" $root }}
        namespace: {{ $root.Release.Namespace }}
        port: {{ $root.Values.webhook.port }}
        path: /validate-backup
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
  # OdooRestore: another tenant's backup only with spec.fromInstance naming it; never live
  # data into a non-production instance. CREATE only: a restore is immutable.
  - name: validate-restore.odoo.tenantops.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Fail
    matchPolicy: Equivalent
    timeoutSeconds: 10
    rules:
      - apiGroups: ["odoo.tenantops.io"]
        apiVersions: ["v1alpha1"]
        resources: ["odoorestores"]
        operations: ["CREATE"]
        scope: Cluster
    clientConfig:
      service:
        name: {{ include "odoo-operator.webhookService" $root }}
        namespace: {{ $root.Release.Namespace }}
        port: {{ $root.Values.webhook.port }}
        path: /validate-restore
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
{{- end -}}

{{/*
The MutatingWebhookConfiguration of a sharded fleet: stamps odoo.tenantops.io/shard on every
new OdooInstance, OdooBackup and OdooRestore (and keeps it on an instance whose apply omits
it), so a tenant's shard never changes unless someone edits the label. Fail-closed like the
validating one.
*/}}
{{- define "odoo-operator.shardWebhookConfiguration" -}}
{{- $root := .root }}
{{- if $root.Values.shards }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: shards.odoo.tenantops.io
  labels:
    {{- include "odoo-operator.labels" $root | nindent 4 }}
  {{- if $root.Values.webhook.certManager.enabled }}
  annotations:
    cert-manager.io/inject-ca-from: {{ printf "%s/%s-webhook" $root.Release.Namespace (include "odoo-operator.fullname" $root) }}
  {{- end }}
webhooks:
  {{- range $kind := list (list "instance" "odooinstances" "[\"CREATE\", \"UPDATE\"]") (list "backup" "odoobackups" "[\"CREATE\"]") (list "restore" "odoorestores" "[\"CREATE\"]") }}
  - name: assign-shard-{{ index $kind 0 }}.odoo.tenantops.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Fail
    matchPolicy: Equivalent
    reinvocationPolicy: Never
    timeoutSeconds: 10
    rules:
      - apiGroups: ["odoo.tenantops.io"]
        apiVersions: ["v1alpha1"]
        resources: [{{ index $kind 1 | quote }}]
        operations: {{ index $kind 2 }}
        scope: Cluster
    clientConfig:
      service:
        name: {{ include "odoo-operator.webhookService" $root }}
        namespace: {{ $root.Release.Namespace }}
        port: {{ $root.Values.webhook.port }}
        path: /assign-shard-{{ index $kind 0 }}
      {{- with $.caBundle }}
      caBundle: {{ . }}
      {{- end }}
  {{- end }}
{{- end }}
{{- end -}}
