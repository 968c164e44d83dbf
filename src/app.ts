/** The HTTP surface: a Hono app. */
import { Hono } from 'hono';
import { adminRoutes } from './admin/routes';
import { consoleRoutes } from './console/routes';
import { errorResponse, onError } from './http/errors';
import { handleWebhook } from './webhook/handler';

export const WEBHOOK_PATH = '/webhooks/workos';

export const app = new Hono<{ Bindings: Env }>();

app.post(WEBHOOK_PATH, handleWebhook);
app.all(WEBHOOK_PATH, () => errorResponse(405, 'method_not_allowed', 'Use POST to deliver WorkOS webhooks.', { Allow: 'POST' }));
app.get('/health', (c) => c.json({ status: 'ok' }));
app.route('/admin', adminRoutes);
app.route('/console', consoleRoutes);
app.notFound(() => errorResponse(404, 'not_found', 'No such route.'));
app.onError(onError);
