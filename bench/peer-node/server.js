// The peer we measure cartd against: POST /add-to-cart and GET /get-cart as a Node shop
// would write them for speed (Fastify, ioredis auto-pipelining, a worker per core). It
// stores carts in cartd's format (the {c<n>}:<id> hash of "inventory_id quantity" with its
// TTL; src/lua/holds.lua) and answers with the same bodies, but holds no stock: it does
// less than cartd.
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import Fastify from 'fastify';
import Redis from 'ioredis';

const PORT = Number(process.env.PORT ?? 8090);
const REDIS_PORT = Number(process.env.REDIS_PORT ?? 6379);
const TTL_SECONDS = 900;
const WORKERS = Number(process.env.WORKERS ?? os.availableParallelism());
const ID = /^[A-Za-z0-9._-]{1,64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The cart's key, as src/functions/keys.hpp names it.
function cartKey(id) {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) % 1000003;
  return `{c${h % 1024}}:${id}`;
}

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const redis = new Redis({ host: '127.0.0.1', port: REDIS_PORT, enableAutoPipelining: true });
  const app = Fastify({ logger: false, bodyLimit: 16 * 1024 });

  app.post('/add-to-cart', async (req, reply) => {
    const { product_id, inventory_id, quantity } = req.body ?? {};
    if (!ID.test(product_id ?? '') || !ID.test(inventory_id ?? '') || !Number.isInteger(quantity) ||
        quantity < 1 || quantity > 100) {
      return reply.code(400).send({ message: 'invalid request' });
    }
    let sid = req.headers['cart-session-id'];
    if (sid !== undefined && !UUID.test(sid)) return reply.code(400).send({ message: 'cart-session-id must be a UUID' });
    if (!sid || !(await redis.exists(cartKey(sid)))) sid = randomUUID();
    await Promise.all([
      redis.hset(cartKey(sid), product_id, `${inventory_id} ${quantity}`),
      redis.expire(cartKey(sid), TTL_SECONDS),
    ]);
    reply.header('cart-session-id', sid);
    return { message: 'Product added to cart successfully', cartSessionId: sid };
  });

  app.get('/get-cart', async (req, reply) => {
    const sid = req.headers['cart-session-id'];
    if (!sid || !UUID.test(sid)) return reply.code(400).send({ data: [] });
    const lines = await redis.hgetall(cartKey(sid));
    const data = Object.entries(lines).filter(([field]) => field !== '@').map(([product_id, value]) => {
      const [inventory_id, quantity] = value.split(' ');
      return { product_id, inventory_id, quantity: Number(quantity) };
    });
    if (data.length === 0) return reply.code(404).send({ message: 'Cart is empty', data: [] });
    return { message: 'Cart retrieved successfully', data };
  });

  await app.listen({ port: PORT, host: '127.0.0.1' });
}
