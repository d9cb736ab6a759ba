/** Sidecar injection: the library the CLI (`citadel inject`) and the admission proxy call. */
export { inject, definitionKind, type InjectReport, type InjectResult, type ResourceKind } from './injector';
export {
  injectConfig, parseInjectConfigFile, settingsFor, defaultCaptureScript, DEFAULT_SIDECAR_SETTINGS, DEFAULT_PROXY_IMAGE,
  type InjectConfig, type InjectConfigFile, type SidecarSettings,
} from './config';
export { parseSidecarTemplate, defaultSidecarTemplate, renderSidecar, TEMPLATE_PLACEHOLDERS, type SidecarTemplate, type TemplateValues } from './template';
export { convertAppToPod, type AppConversion } from './app-to-pod';
export { captureRulesOf, captureArgs, type CaptureRules } from './capture';
export { parseStatus, formatStatus, type SidecarStatus } from './pod';
export { formatReport } from './report';
export { jsonDiff } from './diff';
